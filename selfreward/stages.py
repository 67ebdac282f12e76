"""Run a round's generation stages (prompts, candidates, judge) in one process, model loaded once.

The orchestrator starts this as a subprocess so generation memory is gone before training starts:

    python -m selfreward.stages --run-dir runs/tiny --round 1 prompts candidates judge

Each stage reads its inputs from the round folder, writes its output atomically and records itself
in the round's manifest; a stage already in the manifest is skipped, so rerunning is safe.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from tqdm.auto import tqdm

from selfreward.candidates import sample_candidates
from selfreward.config import Config, ConfigError, load_frozen
from selfreward.data import load_seed
from selfreward.generation import Generator, load_generator
from selfreward.judge import judge_candidates
from selfreward.prompts import generate_prompts
from selfreward.rundir import RunDir, read_jsonl, write_jsonl

GENERATION_STAGES = ("prompts", "candidates", "judge")


def stage_seed(cfg: Config, t: int, stage: str) -> int:
    """Deterministic per (run seed, round, stage), so rerunning one stage reproduces it."""
    return cfg.seed * 100_003 + t * 101 + GENERATION_STAGES.index(stage)


def run_prompts(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    seed_instructions = [r["instruction"] for r in load_seed(cfg.data.ift_path, "ift")]
    records, stats = generate_prompts(gen, cfg.prompts, seed_instructions, stage_seed(cfg, t, "prompts"))
    if not records:
        raise ConfigError(f"Round {t}: the model wrote no usable prompt ({stats}); loosen prompts.* filters.")
    write_jsonl(rd.output(t, "prompts"), records)
    return {"records": len(records), **stats}


def run_candidates(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    prompts = read_jsonl(rd.output(t, "prompts"))
    records = sample_candidates(gen, cfg.generation, prompts, stage_seed(cfg, t, "candidates"))
    write_jsonl(rd.output(t, "candidates"), records)
    return {"records": len(records)}


def run_judge(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    candidates = read_jsonl(rd.output(t, "candidates"))
    records = judge_candidates(gen, cfg.judge, candidates, stage_seed(cfg, t, "judge"))
    write_jsonl(rd.output(t, "judge"), records)
    failures = Counter(r["score"] is None for r in records)[True]
    return {"records": len(records), "parse_failures": failures}


RUNNERS = {"prompts": run_prompts, "candidates": run_candidates, "judge": run_judge}


def run_generation_stages(run_dir: str, t: int, stages: list[str]) -> None:
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    todo = [s for s in stages if not rd.is_done(t, s)]
    if not todo:
        return
    rd.round_dir(t).mkdir(parents=True, exist_ok=True)
    gen = load_generator(cfg, rd.policy(cfg, t))
    for stage in todo:
        start = time.perf_counter()
        entry = RUNNERS[stage](gen, cfg, rd, t)
        rd.mark_done(t, stage, seconds=round(time.perf_counter() - start, 3), **entry)
        tqdm.write(f"[round {t}] {stage}: {entry}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("stages", nargs="+", choices=GENERATION_STAGES)
    args = parser.parse_args(argv)
    try:
        run_generation_stages(args.run_dir, args.round, args.stages)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
