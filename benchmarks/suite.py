"""The benchmark rows: each a ratio of two ways of doing one job, measured side by side in this process
on the same data and model, so that the noise of shared machines cancels out of the ratio."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from selfreward import profiling, stats
from selfreward.candidates import sample_candidates
from selfreward.config import compose, to_yaml
from selfreward.generation.base import Sampling
from selfreward.generation.hf import HFGenerator
from selfreward.judge import judge_candidates, judge_template, score_token_ids
from selfreward.pairs import build_pairs
from selfreward.rundir import RunDir, write_jsonl
from selfreward.schema import Config, JudgeConfig, JudgeMethod
from selfreward.templates import chat_prompt
from selfreward.text import token_counts


@dataclass(frozen=True)
class Size:
    """How much work each row does. `tiny` is the default; `minimal` only keeps the suite working."""

    init_epochs: float  # 0 = skip the init SFT: a random model (judgments will not parse)
    prompts: int  # prompts for rows 1-3
    new_tokens: int
    judge_tokens: int
    pairs: int  # DPO pairs for row 4
    round_prompts: int  # prompts of the round in row 5
    scale_prompts: tuple[int, ...]  # row 6
    scale_candidates: tuple[int, ...]
    share_rounds: int  # row 5: rounds of the in-process run (the first pays the imports)
    model: tuple[str, ...] = ()  # overrides of the tiny recipe's model


# The test suite's shrunken tiny model: the minimal size only checks that every row still runs.
SHRUNK = ("model.tiny.vocab_size=512", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
          "model.tiny.num_hidden_layers=2")
SIZES = {
    "tiny": Size(3, 64, 32, 96, 32, 16, (8, 16, 32), (2, 4, 8), 3),  # the tiny recipe's model and batch size
    "minimal": Size(0, 4, 4, 8, 4, 2, (1, 2), (2, 4), 2, SHRUNK),
}


def row(name: str, ratio: float | None, target: float | None, higher_is_better: bool, detail: str) -> dict:
    return {"name": name, "ratio": None if ratio is None else round(ratio, 3), "target": target,
            "higher_is_better": higher_is_better, "detail": detail}


def _selfreward(*args: str, env: dict | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "selfreward", *args], capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"selfreward {' '.join(args)} failed:\n{result.stderr[-3000:]}")


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
    _selfreward("run", *common, "rounds=0")
    cfg = compose(common)
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


def batched_generation(gen: HFGenerator, size: Size) -> dict:
    prompts = [chat_prompt(gen.tokenizer, p["prompt"]) for p in _prompts(size.prompts)]
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=size.new_tokens, seed=0)
    gen.generate(prompts[:2], sampling)  # warm up

    def count(outs):
        return sum(token_counts(gen.tokenizer, [o[0] for o in outs]))

    batched, t_batched = _timed(gen.generate, prompts, sampling)
    looped, t_loop = _timed(lambda: [gen.generate([p], sampling)[0] for p in prompts])
    fast, slow = count(batched) / t_batched, count(looped) / t_loop
    return row("batched generation vs per-prompt loop (tokens/s)", fast / slow, 10.0, True,
               f"{len(prompts)} prompts, batch {gen.batch_size}: {fast:.0f} vs {slow:.0f} tokens/s")


def judges(gen: HFGenerator, size: Size, candidates: list[dict]) -> list[dict]:
    logprob_cfg = JudgeConfig(method=JudgeMethod.logprob)
    sampled_cfg = JudgeConfig(samples=3, max_new_tokens=size.judge_tokens, temperature=0.7)
    judge_candidates(gen, logprob_cfg, candidates[:2], seed=0)  # warm up
    by_logprob, t_logprob = _timed(judge_candidates, gen, logprob_cfg, candidates, 0)
    by_sampling, t_sampled = _timed(judge_candidates, gen, sampled_cfg, candidates, 0)
    both = [(a["score"], b["score"]) for a, b in zip(by_logprob, by_sampling)
            if a["score"] is not None and b["score"] is not None]
    tau = stats.kendall_tau(*map(list, zip(*both))) if len(both) > 1 else None
    judge_row = row("logprob judge vs 3 sampled judgments (time)", t_sampled / t_logprob, 10.0, True,
                    f"{len(candidates)} candidates: {t_logprob:.2f} s vs {t_sampled:.2f} s; Kendall tau of their "
                    f"scores {'n/a' if tau is None else f'{tau:.2f}'} over {len(both)} candidates both scored")

    # 3. the same logprob scoring with the rubric's KV computed once per call, and per prompt
    template = judge_template(logprob_cfg)
    prefix, ids = score_token_ids(gen.tokenizer, 5)
    rendered = [chat_prompt(gen.tokenizer, template.render(instruction=c["prompt"], response=c["response"])) + prefix
                for c in candidates]
    gen.prefix_cache = False
    full, t_full = _timed(gen.next_token_probs, rendered, ids, repeat=2)
    gen.prefix_cache = True
    shared, t_shared = _timed(gen.next_token_probs, rendered, ids, repeat=2)
    diff = max(abs(a - b) for ra, rb in zip(full, shared) for a, b in zip(ra, rb))
    prefix_row = row("judge scoring with the shared rubric prefix cached vs not (time)", t_full / t_shared, None,
                     True, f"{len(rendered)} judge prompts: {t_shared:.2f} s vs {t_full:.2f} s; "
                     f"largest probability difference {diff:.1e}")
    return [judge_row, prefix_row]


def update_vs_bare_trl(cfg: Config, work: Path, size: Size, candidates: list[dict]) -> dict:
    """Our DPO update stage against a plain TRL script, same pairs and settings, both in this process."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from selfreward.train import dpo

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
                         per_device_train_batch_size=cfg.train.per_device_batch_size, bf16=False,
                         use_cpu=not torch.cuda.is_available(), logging_steps=1, save_strategy="no",
                         report_to="none", seed=cfg.seed + 1)
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
    return row("update stage vs bare TRL DPOTrainer script (time)", times["ours"] / times["bare"], 1.10, False,
               f"{len(pairs)} pairs, one process: {times['ours']:.2f} s vs {times['bare']:.2f} s")


def outside_model_share(cfg: Config, work: Path, size: Size, overrides: list[str]) -> dict:
    """Run real rounds with the CLI (plain-process training) and compare each round's wall time with the
    time spent inside model generate / scoring / training calls. With `launch.in_process=true` the
    first round also pays the imports of torch, transformers and TRL, once per run: the row is the mean
    of the rounds after it. The same round with a fresh process per stage (the default) runs beside it."""
    rounds = {mode: _profiled_rounds(cfg, work, size, overrides, mode, n)
              for mode, n in (("in_process", size.share_rounds), ("fresh", 1))}
    steady = rounds["in_process"][1:]
    share = sum(1 - inside / wall for wall, inside in steady) / len(steady)

    def show(wall: float, inside: float) -> str:
        return f"{wall:.1f} s, {inside:.1f} s inside (share {1 - inside / wall:.2f})"

    return row("share of a tiny round's wall time outside model calls", share, 0.10, False,
               f"{size.round_prompts} prompts x 4 candidates, logprob judge, DPO; launch.in_process=true, rounds "
               f"2-{len(rounds['in_process'])}: " + "; ".join(show(*r) for r in steady) + "; its round 1 (imports "
               f"once per run): {show(*rounds['in_process'][0])}; a fresh process per stage (launch.in_process=false): "
               f"{show(*rounds['fresh'][0])}")


def _profiled_rounds(cfg: Config, work: Path, size: Size, overrides: list[str], mode: str,
                     n_rounds: int) -> list[tuple[float, float]]:
    """(wall seconds, seconds inside model calls) of each round of a fresh run from M1. Model loading
    counts as outside."""
    source = RunDir(cfg.run_dir)
    run_dir = work / mode
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    for part in ("base_model", "init"):
        if (source.root / part).is_dir():
            shutil.copytree(source.root / part, run_dir / part)
    profile = work / f"{mode}.jsonl"
    profile.unlink(missing_ok=True)
    args = ["recipe=tiny", *size.model, *overrides, f"rounds={n_rounds}", "launch.accelerate_config=null",
            f"launch.in_process={mode == 'in_process'}", "eval.enabled=false", "pairs.on_too_few=skip",
            f"prompts.num_prompts={size.round_prompts}", "generation.num_candidates=4", "judge=logprob",
            f"generation.max_new_tokens={size.new_tokens}", f"run_dir={run_dir}",
            *(["init.skip=true"] if cfg.init.skip else [])]
    if cfg.model.name_or_path:
        args.append(f"model.name_or_path={cfg.model.name_or_path}")
    _selfreward("run", *args, env={**os.environ, profiling.ENV: str(profile)})
    rounds, inside = [], 0.0
    for call in profiling.read(profile):  # every process appends when its call ends: a round's come before it
        if call["kind"] == "round":
            rounds.append((call["seconds"], inside))
            inside = 0.0
        elif call["kind"] in ("generate", "score", "train"):
            inside += call["seconds"]
    return rounds


def scaling(gen: HFGenerator, cfg: Config, size: Size) -> dict:
    """A round's generation work (candidates, logprob judging, pairs) in this process at growing sizes;
    the fitted exponent of time vs size (1 = linear)."""
    judge = JudgeConfig(method=JudgeMethod.logprob)

    def one_round(n_prompts: int, n_candidates: int) -> float:
        prompts = _prompts(n_prompts)
        gcfg = replace(cfg.generation, num_candidates=n_candidates, max_new_tokens=size.new_tokens)
        start = time.perf_counter()
        candidates = sample_candidates(gen, gcfg, prompts, seed=0)
        build_pairs(candidates, judge_candidates(gen, judge, candidates, seed=0))
        return time.perf_counter() - start

    one_round(size.scale_prompts[0], size.scale_candidates[0])  # warm up
    base_n = size.scale_candidates[len(size.scale_candidates) // 2]
    series = {"prompts": [(p, one_round(p, base_n)) for p in size.scale_prompts],
              "candidates": [(n, one_round(size.scale_prompts[0], n)) for n in size.scale_candidates]}
    slopes = {k: _slope(v) for k, v in series.items()}
    detail = "; ".join(f"{k}: " + ", ".join(f"{x}->{t:.2f}s" for x, t in v) + f" (exponent {slopes[k]:.2f})"
                       for k, v in series.items())
    return row("round time scaling exponent (prompts, candidates: the larger)", max(slopes.values()), 1.1, False,
               detail)


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run(size_name: str = "tiny", model: str | None = None, device: str | None = None,
        overrides: list[str] | None = None, work: Path | None = None, progress=print) -> list[dict]:
    size, overrides = SIZES[size_name], list(overrides or [])
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="selfreward-bench-")) if owned else work
    try:
        progress("preparing M1")
        cfg, m1 = prepare(work, size, model, overrides)
        gen = HFGenerator(m1, cfg, device=device, progress=False)
        rows = []
        progress("1. batched generation")
        rows.append(batched_generation(gen, size))
        candidates = sample_candidates(gen, replace(cfg.generation, num_candidates=2, max_new_tokens=size.new_tokens),
                                       _prompts(size.prompts // 2 or 1), seed=1)
        progress("2-3. judges and the prefix cache")
        rows += judges(gen, size, candidates)
        progress("6. scaling")
        rows.append(scaling(gen, cfg, size))
        del gen
        progress("4. update stage vs bare TRL")
        rows.append(update_vs_bare_trl(cfg, work, size, candidates))
        progress("5. a real round's time outside model calls")
        rows.append(outside_model_share(cfg, work, size, overrides))
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
