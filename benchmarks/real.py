"""The real-model rows: SmolLM2-135M-Instruct at `recipe=smollm2`'s settings, each a ratio measured side
by side in one run (docs/benchmarks.md shows the table and what each row means).

    python -m benchmarks.real --m1 runs/smollm2/init/model    # about 4 minutes on 2 CPU cores
    python -m benchmarks.real --show                           # results_smollm2.json as markdown

`--m1` is a model after the recipe's init (the judge rows need judgments that parse: `selfreward run
recipe=smollm2` writes one to `<run_dir>/init/model`); without it the recipe's init runs first (about
4 minutes more). Writes `benchmarks/results_smollm2.json` in the format of `results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import suite
from benchmarks.__main__ import markdown
from benchmarks.rows import Row, judge_speed, outside_share
from selfreward.config import compose
from selfreward.data import load_seed
from selfreward.evaluate import eft_items
from selfreward.generation.base import Sampling
from selfreward.generation.hf import HFGenerator
from selfreward.generation.sampling import RANKS
from selfreward.judge import judge_candidates
from selfreward.resources import DATA_DIR
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeMethod
from selfreward.stats import pairwise_accuracy
from selfreward.templates import chat_prompt
from selfreward.text import token_counts

RESULTS = Path(__file__).resolve().parent / "results_smollm2.json"
RECIPE = ["recipe=smollm2", "init.skip=true"]


def matmul_bound(model: torch.nn.Module, rows: int, repeat: int = 3) -> float:
    """Tokens/s if a decoding step cost only its matmuls: every linear layer of `model` (lm_head
    included) applied in turn to `rows` rows at the model's dtype, weights read from memory as a step
    reads them. The step's compute bound at this batch size, measured on this machine now."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    p = next(model.parameters())
    inputs = {n: torch.randn(rows, n, dtype=p.dtype, device=p.device) for n in {m.in_features for m in layers}}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeat + 1):  # the first pass warms up
            start = time.perf_counter()
            for m in layers:
                m(inputs[m.in_features])
            if p.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return rows / best


def generated_tokens(gen, outs: list[list[str]]) -> int:
    return sum(token_counts(gen.tokenizer, [t for o in outs for t in o]))


def decoding_row(gen, prompts: list[str], sampling: Sampling, bound: float, low: float = 0.5) -> Row:
    """The round's sampled decoding (tokens written per second, padding of finished rows included)
    against the matmul bound at the same number of rows."""
    gen.generate(prompts[:1], replace(sampling, max_new_tokens=4, n=1))  # warm up
    start = time.perf_counter()
    outs = gen.generate(prompts, sampling)
    ours = generated_tokens(gen, outs) / (time.perf_counter() - start)
    rows = len(prompts) * sampling.n
    return Row("sampled decoding vs the model's matmul bound (tokens/s)", ours / bound, low=low,
               detail=f"{len(prompts)} prompts x {sampling.n} = {rows} rows, T {sampling.temperature:g}, top-p "
                      f"{sampling.top_p:g}, {sampling.max_new_tokens} new tokens, {str(gen.model.dtype)[6:]}: "
                      f"{ours:.0f} vs {bound:.0f} tokens/s")


def sampler_row(gen, prompts: list[str], sampling: Sampling) -> Row:
    """Top-p by partial ranking (the default) against a full sort of every row, same seeds: the time
    ratio, met only when both wrote the same text."""
    times, texts = {}, {}
    for name, ranks in (("full", ()), ("partial", RANKS)):
        gen.sampler_ranks = ranks
        start = time.perf_counter()
        texts[name] = gen.generate(prompts, sampling)
        times[name] = time.perf_counter() - start
    same = texts["full"] == texts["partial"]
    return Row("seeded top-p: ranking the nucleus vs sorting the vocabulary (time)", times["full"] / times["partial"],
               low=1.3, detail=f"{len(prompts) * sampling.n} rows: {times['partial']:.1f} s vs {times['full']:.1f} s; "
                               f"identical text: {same}", gate="" if same else "the two samplers wrote different text")


def judge_row(gen, cfg: Config) -> Row:
    """The logprob judge against the paper's 3 sampled judgments on the shipped held-out EFT set, gated
    by both parse rates and pairwise accuracy (the row of the tiny suite, on the real model)."""
    rows = load_seed(cfg.eval.eft_path or DATA_DIR / "heldout_eft.jsonl", "eft")
    items, groups, reference = eft_items(rows), [r["instruction"] for r in rows], [float(r["score"]) for r in rows]
    fast = replace(cfg.judge, method=JudgeMethod.logprob)
    sampled = replace(cfg.judge, method=JudgeMethod.sampled, samples=3)
    judge_candidates(gen, fast, items[:2], seed=0)  # warm up
    timed = {}
    for name, judge in (("fast", fast), ("sampled", sampled)):
        start = time.perf_counter()
        judged = judge_candidates(gen, judge, items, seed=0)
        timed[name] = (time.perf_counter() - start, pairwise_accuracy(groups, [j["score"] for j in judged], reference)[0],
                       suite.parse_rate(judged))
    (t_fast, acc_fast, p_fast), (t_sampled, acc_sampled, p_sampled) = timed["fast"], timed["sampled"]
    return judge_speed("logprob judge vs 3 sampled judgments (time)", t_fast, t_sampled, acc_fast, acc_sampled, 10.0,
                       f"M1, {len(items)} held-out EFT judgments, judge.max_new_tokens {cfg.judge.max_new_tokens}: "
                       f"{t_fast:.1f} s vs {t_sampled:.1f} s", parsed=(p_fast, p_sampled))


def round_share_row(m1: str, work: Path) -> Row:
    """One `recipe=smollm2` round from M1 as the recipe runs it (training under ZeRO-2 on 2 ranks): the
    share of its wall time outside model calls (generate, score, train)."""
    wall, calls = suite._profiled_run(work / "round", [*RECIPE, f"model.name_or_path={m1}", "rounds=1"])
    return outside_share("share of a recipe=smollm2 round outside model calls", rounds_inside(calls), 0.10,
                         f"round 1 from M1 ({wall:.0f} s for the whole command)")


def rounds_inside(calls: list[dict]) -> list[tuple[float, float]]:
    """(wall, seconds inside model calls) of each round in a profile. Every process appends its calls
    as they end, so a round's come before it; the ranks of one training launch train at the same time
    and end together, so a run of consecutive `train` entries counts as its longest."""
    rounds, inside, ranks = [], 0.0, []
    for call in calls:
        if call["kind"] == "train":
            ranks.append(call["seconds"])
            continue
        inside, ranks = inside + max(ranks, default=0.0), []
        if call["kind"] in ("generate", "score"):
            inside += call["seconds"]
        elif call["kind"] == "round":
            rounds.append((call["seconds"], inside))
            inside = 0.0
    return rounds


def run(m1: str | None, work: Path, progress=print) -> list[Row]:
    if m1 is None:
        progress("the recipe's init (no --m1)")
        init_dir = work / "init"
        suite._selfreward("run", "recipe=smollm2", "rounds=0", f"run_dir={init_dir}")
        m1 = str(RunDir(init_dir).root / "init" / "model")
    # the update row trains in this process, as the bare TRL script does
    cfg = compose([*RECIPE, f"model.name_or_path={m1}", f"run_dir={work / 'update'}", "launch.accelerate_config=null"])
    gen = HFGenerator(m1, cfg, progress=False)
    g = cfg.generation
    prompts = [chat_prompt(gen.tokenizer, r["instruction"]) for r in load_seed(None, "ift")[: cfg.prompts.num_prompts]]
    sampling = Sampling(g.temperature, g.top_p, g.max_new_tokens, n=g.num_candidates, seed=0)
    progress("sampled decoding against the matmul bound")
    rows = [decoding_row(gen, prompts, sampling, matmul_bound(gen.model, len(prompts) * g.num_candidates))]
    progress("seeded top-p: partial ranking vs full sort")
    rows.append(sampler_row(gen, prompts, sampling))
    progress("logprob vs sampled judge")
    rows.append(judge_row(gen, cfg))
    candidates = [{"prompt_id": f"p{i}", "prompt": r["instruction"], "response": r["response"]}
                  for i, r in enumerate(load_seed(None, "ift")[:16])]
    progress("the shared prefix cache")
    rows.append(suite.prefix_cache_row(gen, None, candidates))
    del gen
    progress("update stage vs bare TRL")
    rows.append(suite.update_vs_bare_trl(cfg, work, replace(suite.SIZES["tiny"], pairs=8), candidates))
    progress("a whole round's time outside model calls")
    rows.append(round_share_row(m1, work))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m1", help="SmolLM2 after the recipe's init (default: run the init first)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--show", action="store_true", help="print --out's results as a markdown table; run nothing")
    args = parser.parse_args(argv)
    if args.show:
        print(markdown(json.loads(args.out.read_text()), "python -m benchmarks.real"), end="")
        return 0
    if args.m1 and not (Path(args.m1) / "config.json").is_file():
        parser.exit(2, f"--m1 {args.m1}: no checkpoint there (a folder with config.json, e.g. <run_dir>/init/model)\n")
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="selfreward-bench-real-"))
    try:
        rows = [r.as_dict() for r in run(args.m1, work, progress=lambda m: print(m, file=sys.stderr, flush=True))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": suite.machine(None), "size": "smollm2", "seconds": round(time.perf_counter() - start),
              "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, "python -m benchmarks.real"), end="")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
