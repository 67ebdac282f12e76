"""The benchmark rows: each a measurement against a target it can miss, taken side by side in one
process (or one sitting) on the same data and model, so that the noise of a shared machine mostly
cancels out of the ratios. See `rows.py` for what "met" means and README / docs/benchmarks.md for the
measured table."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.rows import Row, at_scale, exponent, judge_speed, median, outside_share, overhead, speedup
from selfreward import profiling, testbed, testbed_metrics
from selfreward.candidates import sample_candidates
from selfreward.config import compose, to_yaml
from selfreward.files import read_jsonl, write_jsonl
from selfreward.generation.base import Sampling
from selfreward.generation.hf import HFGenerator
from selfreward.judge import judge_candidates, judge_template, score_token_ids
from selfreward.metrics import score_histogram
from selfreward.pairs import build_pairs, build_sft
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeConfig, JudgeMethod, Precision
from selfreward.sweep import share_init
from selfreward.templates import chat_prompt
from selfreward.text import token_counts
from selfreward.variants.self_consistency import SelfConsistency, vote_pairs


def _checkpointing_field() -> str:
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


CHECKPOINTING = _checkpointing_field()


@dataclass(frozen=True)
class Size:
    """How much work each row does. `tiny` is the default; `minimal` only keeps the suite working."""

    init_epochs: float  # the tiny M1's init SFT (0 = none: a random model)
    testbed_steps: int  # the testbed M1's init budget (the judge-speed rows need a judge that learned)
    prompts: int  # prompts for the batching and prefix rows
    new_tokens: int
    pairs: int  # DPO pairs for the update row
    round_prompts: int  # prompts of the rounds in the share rows
    scale_batch: int  # the scaling rows' fixed batch size
    scale_steps: tuple[int, ...]  # growth factors (x1, x2, ...): the largest spans >= 8 batches
    share_rounds: int  # rounds of the in-process run (the first pays the imports)
    timings: int  # runs of each kind for the default-vs-in-process row (median)
    scale_pairs: int  # prompts of the synthetic round for the pairs-at-scale row
    model: tuple[str, ...] = ()  # overrides of the tiny recipe's model
    testbed: tuple[str, ...] = ()  # overrides of the testbed recipe


# The test suite's shrunken tiny model: the minimal size only checks that every row still runs.
SHRUNK = ("model.tiny.vocab_size=512", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
          "model.tiny.num_hidden_layers=2")
SHRUNK_TESTBED = ("testbed.n_ift=100", "testbed.n_eft=100", "testbed.n_heldout=16", "testbed.n_self_instruct=10",
                  "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.tiny.num_hidden_layers=2")
SIZES = {
    "tiny": Size(3, 1000, 64, 32, 32, 16, 16, (1, 2, 4, 8), 3, 3, 20_000),
    "minimal": Size(0, 10, 4, 4, 4, 2, 2, (1, 2), 2, 1, 2_000, SHRUNK, SHRUNK_TESTBED),
}


def _selfreward(*args: str, env: dict | None = None) -> float:
    """Run the CLI; return its wall seconds."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "selfreward", *args], capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"selfreward {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def prepare(work: Path, size: Size, model: str | None, overrides: list[str]) -> tuple[Config, str]:
    """A run directory holding M1 (the tiny model after a short init SFT, or `model` as is)."""
    run_dir = work / "run"
    common = ["recipe=tiny", *size.model, *overrides, "launch.accelerate_config=null", f"run_dir={run_dir}"]
    if model:
        common += [f"model.name_or_path={model}", "init.skip=true"]
    elif size.init_epochs == 0:
        common += ["init.skip=true"]
    else:
        common += [f"init.epochs={size.init_epochs}"]
    _selfreward("run", *common, "rounds=0", "launch.in_process=true")
    cfg = compose(common)
    return cfg, RunDir(run_dir).initial(cfg)


def prepare_testbed(work: Path, size: Size, reasoning: bool) -> tuple[Config, str]:
    """The testbed's M1 (its recipe, `testbed_steps` of init): a judge that learned something, and a
    checker to measure it against."""
    run_dir = work / f"testbed{'-reasoning' if reasoning else ''}"
    args = ["recipe=testbed", *size.testbed, f"init.max_steps={size.testbed_steps}", f"run_dir={run_dir}",
            f"judge.reasoning={str(reasoning).lower()}", "eval.enabled=false", "launch.in_process=true"]
    _selfreward("run", *args, "rounds=0")
    cfg = testbed.attach(compose(args), RunDir(run_dir))
    return cfg, RunDir(run_dir).initial(cfg)


def _timed(fn, *args, repeat: int = 1):
    """(result, best wall seconds over `repeat` calls)."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def _prompts(n: int) -> list[dict]:
    from selfreward.data import load_seed

    seeds = [r["instruction"] for r in load_seed(None, "ift")]
    return [{"id": f"p{i:05d}", "prompt": seeds[i % len(seeds)]} for i in range(n)]


def batched_generation(gen, size: Size) -> Row:
    prompts = [chat_prompt(gen.tokenizer, p["prompt"]) for p in _prompts(size.prompts)]
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=size.new_tokens, seed=0)
    gen.generate(prompts[:2], sampling)  # warm up

    def count(outs):
        return sum(token_counts(gen.tokenizer, [o[0] for o in outs]))

    batched, t_batched = _timed(gen.generate, prompts, sampling)
    looped, t_loop = _timed(lambda: [gen.generate([p], sampling)[0] for p in prompts])
    fast, slow = count(batched) / t_batched, count(looped) / t_loop
    return speedup("batched generation vs a per-prompt loop (tokens/s)", slow, fast, 10.0,
                   f"{len(prompts)} prompts, batch {gen.batch_size}: {fast:.0f} vs {slow:.0f} tokens/s")


def _heldout_judged(cfg: Config) -> tuple[list[dict], list[dict]]:
    """The testbed's held-out EFT (one right, one wrong answer per instance) as judge candidates."""
    eft = read_jsonl(Path(cfg.eval.eft_path))
    items = [{"prompt_id": r["instruction"], "prompt": r["instruction"], "candidate_id": i, "response": r["response"]}
             for i, r in enumerate(eft)]
    return eft, items


def _pairwise(eft: list[dict], judged: list[dict], max_score: float) -> float | None:
    return testbed_metrics.metrics([], [], eft, [j["score"] for j in judged], max_score)["judge_pairwise_accuracy"]


def judge_speed_row(gen, cfg: Config, size: Size, reasoning: bool) -> Row:
    """The read judge (forced "Score:", or reasoning then read) against 3 sampled judgments parsed and
    averaged, on the testbed's M1 and its held-out judge set, accuracies checked by the program."""
    eft, items = _heldout_judged(cfg)
    fast = replace(cfg.judge, method=JudgeMethod.logprob, reasoning=reasoning)
    # the round's own length budget: room for the judgment the EFT taught ("Score: 1" alone is 8 tokens
    # on the testbed's one-token-a-character tokenizer), so a baseline is never cut before its score
    sampled = replace(cfg.judge, method=JudgeMethod.sampled, reasoning=False, samples=3, temperature=1.0)
    judge_candidates(gen, fast, items[:2], seed=0)  # warm up
    by_fast, t_fast = _timed(judge_candidates, gen, fast, items, 0)
    by_sampled, t_sampled = _timed(judge_candidates, gen, sampled, items, 0)
    what = "reasoning judge (generate, then read)" if reasoning else "logprob judge"
    return judge_speed(f"{what} vs 3 sampled{' reasoned' if reasoning else ''} judgments (time)", t_fast,
                       t_sampled, _pairwise(eft, by_fast, cfg.judge.max_score),
                       _pairwise(eft, by_sampled, cfg.judge.max_score), 2.0 if reasoning else 10.0,
                       f"testbed M1, {len(items)} held-out judgments: {t_fast:.2f} s vs {t_sampled:.2f} s",
                       parsed=(parse_rate(by_fast), parse_rate(by_sampled)))


def parse_rate(judged: list[dict]) -> float | None:
    """The share of individual judgments whose score parsed (a logprob reading always does)."""
    single = [s for j in judged for s in j["scores"]]
    return sum(s is not None for s in single) / len(single) if single else None


def prefix_cache_row(gen, size: Size, candidates: list[dict]) -> Row:
    template = judge_template(JudgeConfig())
    prefix, ids = score_token_ids(gen.tokenizer, 5)
    rendered = [chat_prompt(gen.tokenizer, template.render(instruction=c["prompt"], response=c["response"])) + prefix
                for c in candidates]
    gen.prefix_cache = False
    full, t_full = _timed(gen.next_token_probs, rendered, ids, repeat=2)
    gen.prefix_cache = True
    shared, t_shared = _timed(gen.next_token_probs, rendered, ids, repeat=2)
    diff = max(abs(a - b) for ra, rb in zip(full, shared) for a, b in zip(ra, rb))
    return Row("judge scoring with the shared rubric prefix cached vs not (time)", t_full / t_shared,
               detail=f"{len(rendered)} judge prompts: {t_shared:.2f} s vs {t_full:.2f} s; largest probability "
                      f"difference {diff:.1e}")


def round_work(gen, cfg: Config, prompts: list[dict], n: int, new_tokens: int) -> float:
    """Seconds of a round's generation work on `prompts`: n candidates each, then the logprob judge."""
    judge = JudgeConfig(method=JudgeMethod.logprob)
    start = time.perf_counter()
    candidates = sample_candidates(gen, replace(cfg.generation, num_candidates=n, max_new_tokens=new_tokens),
                                   prompts, seed=0)
    judge_candidates(gen, judge, candidates, seed=0)
    return time.perf_counter() - start


def scaling_rows(gen, cfg: Config, size: Size) -> list[Row]:
    """A round's generation work as prompts grow across batches of a fixed size, and as N grows."""
    gen.batch_size = size.scale_batch
    base = size.scale_batch
    round_work(gen, cfg, _prompts(base), 2, size.new_tokens)  # warm up
    prompts = [(base * k, round_work(gen, cfg, _prompts(base * k), 2, size.new_tokens)) for k in size.scale_steps]
    candidates = [(k, round_work(gen, cfg, _prompts(base), k, size.new_tokens)) for k in size.scale_steps]
    return [exponent("round generation work vs prompts (scaling exponent)", prompts,
                     f"batch {base}, N=2, prompts + candidates + judge"),
            exponent("round generation work vs candidates per prompt (scaling exponent)", candidates,
                     f"batch {base}, {base} prompts, N")]


def synthetic_round(n_prompts: int, n: int = 4, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    candidates = [{"prompt_id": f"p{i:06d}", "prompt": f"question {i}", "candidate_id": j,
                   "response": f"answer {rng.randrange(50)} to question {i}"}
                  for i in range(n_prompts) for j in range(n)]
    judgments = [{"prompt_id": c["prompt_id"], "candidate_id": c["candidate_id"],
                  "score": None if rng.random() < 0.05 else rng.choice([1.0, 2.0, 3.0, 4.0, 5.0]),
                  "scores": [rng.choice([1.0, 5.0, None])], "judgments": []} for c in candidates]
    return candidates, judgments


def pairs_work(candidates: list[dict], judgments: list[dict]) -> None:
    """The round's pure-Python data work: DPO pairs, SFT set, votes, the score histogram."""

    build_pairs(candidates, judgments)
    build_sft(candidates, judgments, {"Score": 4.0})
    vote_pairs(candidates, SelfConsistency())
    score_histogram(judgments)


def pairs_at_scale_row(size: Size, work=pairs_work) -> Row:
    candidates, judgments = synthetic_round(size.scale_pairs)
    tracemalloc.start()
    start = time.perf_counter()
    work(candidates, judgments)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return at_scale("pairs, SFT set, votes and histogram of a paper-sized round (seconds)", seconds, peak, 5.0,
                    1024.0, f"{size.scale_pairs} prompts x 4 candidates of synthetic judgments")


def update_vs_bare_trl(cfg: Config, work: Path, size: Size, candidates: list[dict]) -> Row:
    """Our DPO update stage against a plain TRL script, same pairs and settings, both in this process."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from selfreward.train import dpo
    from selfreward.train.common import precision

    rd = RunDir(cfg.run_dir)
    policy = rd.initial(cfg)
    pairs = [{"prompt_id": c["prompt_id"], "prompt": c["prompt"], "chosen": c["response"],
              "rejected": candidates[(i + 1) % len(candidates)]["response"]}
             for i, c in enumerate(candidates[: size.pairs])]
    write_jsonl(rd.output(1, "pairs"), pairs)
    (rd.root / "config.yaml").write_text(to_yaml(cfg))

    def ours():
        shutil.rmtree(rd.round_dir(1) / "train", ignore_errors=True)
        shutil.rmtree(rd.model(1), ignore_errors=True)
        (rd.round_dir(1) / "manifest.json").unlink(missing_ok=True)
        dpo.main(["--run-dir", str(rd.root), "--round", "1"])

    def bare():
        out = work / "bare"
        shutil.rmtree(out, ignore_errors=True)
        args = DPOConfig(output_dir=str(out), beta=cfg.update.beta, num_train_epochs=cfg.update.epochs,
                         learning_rate=cfg.update.learning_rate, max_length=cfg.train.max_length,
                         per_device_train_batch_size=cfg.train.per_device_batch_size,
                         gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
                         bf16=precision(cfg) is not Precision.fp32,  # autocast over fp32 weights
                         use_cpu=not torch.cuda.is_available(), logging_steps=1, save_strategy="no",
                         report_to="none", seed=cfg.seed + 1, **{CHECKPOINTING: cfg.train.gradient_checkpointing})
        data = Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}],
                                   "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                   "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
        tokenizer = AutoTokenizer.from_pretrained(policy)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32),
                             ref_model=AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32),
                             args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
        trainer.save_model(str(out / "model"))
        tokenizer.save_pretrained(out / "model")

    bare()  # warm up: imports, tokenizer caches
    times = {"ours": math.inf, "bare": math.inf}
    for _ in range(2):  # alternate, keep the best of each
        times["bare"] = min(times["bare"], _timed(bare)[1])
        times["ours"] = min(times["ours"], _timed(ours)[1])
    return overhead("update stage vs a bare TRL DPOTrainer script (time)", times["ours"], times["bare"], 1.10,
                    f"{len(pairs)} pairs, one process: {times['ours']:.2f} s vs {times['bare']:.2f} s")



def _profiled_run(run_dir: Path, args: list[str]) -> tuple[float, list[dict]]:
    """Run the CLI with the opt-in profile on: (wall seconds, every timed call)."""
    profile = run_dir.with_suffix(".profile.jsonl")
    profile.unlink(missing_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    wall = _selfreward("run", *args, f"run_dir={run_dir}", env={**os.environ, profiling.ENV: str(profile)})
    return wall, profiling.read(profile)


def _inside(calls: list[dict]) -> float:
    return sum(c["seconds"] for c in calls if c["kind"] in ("generate", "score", "train"))


def steady_share_row(cfg: Config, work: Path, size: Size, overrides: list[str]) -> Row:
    """Rounds 2.. of a one-process run from M1 (launch.in_process=true): the steady state, once the
    imports are paid."""
    source, run_dir = RunDir(cfg.run_dir), work / "in_process"
    args = ["recipe=tiny", *size.model, *overrides, f"rounds={size.share_rounds}", "launch.accelerate_config=null",
            "launch.in_process=true", "eval.enabled=false", "pairs.on_too_few=skip",
            f"prompts.num_prompts={size.round_prompts}", "generation.num_candidates=4", "judge=logprob",
            f"generation.max_new_tokens={size.new_tokens}", *(["init.skip=true"] if cfg.init.skip else [])]
    shutil.rmtree(run_dir, ignore_errors=True)
    share_init(source, RunDir(run_dir))  # as a sweep does: the same M1, without training it again
    profile = work / "in_process.jsonl"
    profile.unlink(missing_ok=True)
    _selfreward("run", *args, f"run_dir={run_dir}", env={**os.environ, profiling.ENV: str(profile)})
    rounds, inside = [], 0.0
    for call in profiling.read(profile):  # every process appends when its call ends: a round's come before it
        if call["kind"] == "round":
            rounds.append((call["seconds"], inside))
            inside = 0.0
        elif call["kind"] in ("generate", "score", "train"):
            inside += call["seconds"]
    return outside_share("share of a steady-state round outside model calls (launch.in_process=true)",
                         rounds[1:], 0.10, f"{size.round_prompts} prompts x 4 candidates, logprob judge, DPO, "
                                           f"rounds 2-{len(rounds)}")


def default_path_rows(work: Path, size: Size) -> list[Row]:
    """The README's first command (generation in the orchestrator, each training launched under ZeRO-2
    on 2 ranks; init + 2 rounds + evaluation) against the same recipe wholly in one process, `timings`
    runs of each in one sitting, alternating: the share of the default run outside model calls, and
    the ratio of the medians."""
    # a shrunk model (size.model) may judge every candidate alike: such a round keeps M_t
    default = ["recipe=tiny", *size.model, *(["pairs.on_too_few=skip"] if size.model else [])]
    in_process = [*default, "launch.accelerate_config=null", "launch.in_process=true"]
    runs = {"default": [], "in_process": []}
    for i in range(size.timings):
        for name, args in (("default", default), ("in_process", in_process)):
            runs[name].append(_profiled_run(work / f"{name}{i}", args))
    walls = {name: [wall for wall, _ in r] for name, r in runs.items()}
    share = outside_share("share of the README's first command outside model calls (whole run)",
                          [(wall, _inside(calls)) for wall, calls in runs["default"]], None,
                          "recipe=tiny: init + 2 rounds + evaluation, training launched under ZeRO-2 on 2 ranks")
    ratio = overhead("README's first command vs the same recipe in one process (wall time, medians)",
                     median(walls["default"]), median(walls["in_process"]), 1.3,
                     "default " + ", ".join(f"{w:.0f}" for w in walls["default"]) + " s; in one process "
                     + ", ".join(f"{w:.0f}" for w in walls["in_process"]) + " s")
    return [share, ratio]


def run(size_name: str = "tiny", model: str | None = None, device: str | None = None,
        overrides: list[str] | None = None, work: Path | None = None, progress=print) -> list[Row]:
    size, overrides = SIZES[size_name], list(overrides or [])
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="selfreward-bench-")) if owned else work
    try:
        progress("preparing M1")
        cfg, m1 = prepare(work, size, model, overrides)
        gen = HFGenerator(m1, cfg, device=device, progress=False)
        rows = []
        progress("batched generation")
        rows.append(batched_generation(gen, size))
        candidates = sample_candidates(gen, replace(cfg.generation, num_candidates=2, max_new_tokens=size.new_tokens),
                                       _prompts(size.prompts // 2 or 1), seed=1)
        progress("the shared prefix cache")
        rows.append(prefix_cache_row(gen, size, candidates))
        progress("scaling")
        rows += scaling_rows(gen, cfg, size)
        del gen
        for reasoning in (False, True):
            progress(f"judge speed on the testbed's M1{' (reasoning)' if reasoning else ''}")
            tb_cfg, tb_m1 = prepare_testbed(work, size, reasoning)
            rows.append(judge_speed_row(HFGenerator(tb_m1, tb_cfg, device=device, progress=False), tb_cfg, size,
                                        reasoning))
        progress("pairs at scale")
        rows.append(pairs_at_scale_row(size))
        progress("update stage vs bare TRL")
        rows.append(update_vs_bare_trl(cfg, work, size, candidates))
        progress("a steady-state round's time outside model calls")
        rows.append(steady_share_row(cfg, work, size, overrides))
        if not model:
            progress("the README's first command vs one process")
            rows += default_path_rows(work, size)
        return rows
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def machine(device: str | None) -> str:
    import platform

    import torch

    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if where.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(0)}"
    return f"{platform.node()}: {os.cpu_count()} CPU cores, {where}, Python {platform.python_version()}, " \
           f"torch {torch.__version__}"
