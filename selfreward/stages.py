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
from functools import partial

from tqdm.auto import tqdm

from selfreward.candidates import sample_candidates
from selfreward.config import Config, ConfigError, JudgeConfig, OnProblem, load_frozen
from selfreward.data import load_seed, seed_path
from selfreward.generation import Generator, load_generator
from selfreward.judge import judge_candidates
from selfreward.metrics import score_histogram
from selfreward.process import die_with_parent
from selfreward.prompts import generate_prompts
from selfreward.rundir import ChunkLog, RunDir, read_jsonl

GENERATION_STAGES = ("prompts", "candidates", "judge")


def stage_seed(cfg: Config, t: int, stage: str) -> int:
    """Deterministic per (run seed, round, stage), so rerunning one stage reproduces it."""
    return cfg.seed * 100_003 + t * 101 + GENERATION_STAGES.index(stage)


def run_prompts(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    seed_instructions = [r["instruction"] for r in load_seed(cfg.data.ift_path, "ift")]
    log = ChunkLog(rd.output(t, "prompts"))
    _, kept, stats = log.resume()
    records, stats = generate_prompts(
        gen, cfg.prompts, seed_instructions, stage_seed(cfg, t, "prompts"),
        resumed=([r["prompt"] for r in kept], stats), on_pass=log.append,
    )
    if not records:
        log.discard()
        raise ConfigError(f"Round {t}: the model wrote no usable prompt ({stats}); loosen prompts.* filters.")
    log.finish()
    return {"records": len(records), **stats}


def _chunked(log: ChunkLog, inputs: list[dict], size: int, seed: int, fn, desc: str) -> list[dict]:
    """Apply `fn(chunk, chunk_seed)` to fixed-size chunks of `inputs`, committing each result, and
    skip the chunks an interrupted attempt already committed; the caller finishes the log. Chunk i
    always holds the same inputs and gets the same seed, so a resumed stage reproduces an
    uninterrupted one."""
    done, records, _ = log.resume()
    chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
    for i in tqdm(range(done, len(chunks)), initial=done, total=len(chunks), desc=desc, unit="chunk"):
        new = fn(chunks[i], seed * 1_000_003 + i)
        records += new
        log.append(new)
    return records


def run_candidates(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    prompts = read_jsonl(rd.output(t, "prompts"))
    fn = partial(sample_candidates, gen, cfg.generation)
    log = ChunkLog(rd.output(t, "candidates"))
    records = _chunked(log, prompts, cfg.generation.batch_size, stage_seed(cfg, t, "candidates"), fn, "candidates")
    log.finish()
    return {"records": len(records)}


def run_judge(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    candidates = read_jsonl(rd.output(t, "candidates"))
    fn = partial(judge_candidates, gen, cfg.judge)
    log = ChunkLog(rd.output(t, "judge"))
    records = _chunked(log, candidates, cfg.generation.batch_size, stage_seed(cfg, t, "judge"), fn, "judge")
    try:
        check_judge_health(cfg.judge, records, t)
    except ConfigError:
        log.discard()  # judged again on the rerun, under the settings the user changes
        raise
    log.finish()
    return {"records": len(records), "parse_failures": sum(r["score"] is None for r in records)}


def check_judge_health(cfg: JudgeConfig, records: list[dict], t: int) -> None:
    """Stop when no judgment parsed; warn (or stop) when one score dominates: the known failure
    where a self-judge gives every answer the same score and no pairs can form."""
    if all(r["score"] is None for r in records):
        raw = next((j for r in records for j in r["judgments"]), "(logprob: too little probability on score tokens)")
        raise ConfigError(
            f"Round {t}: the judge produced no parseable score for any of {len(records)} candidates "
            f"(parse-failure rate 100%). One raw judgment: {raw[:300]!r}. Check judge.template, "
            "judge.max_new_tokens (the judgment may be cut before 'Score:'), or the EFT data."
        )
    histogram = score_histogram(records)
    share = max(histogram.values()) / sum(histogram.values())
    if share > cfg.max_mode_share:
        mode = max(histogram, key=histogram.get)
        message = (
            f"Round {t}: {share:.0%} of parsed judgments give score {mode} (judge.max_mode_share="
            f"{cfg.max_mode_share}); histogram {histogram}. The judge is collapsing to one score."
        )
        if cfg.on_collapse is OnProblem.stop:
            raise ConfigError(message + " Stopping (judge.on_collapse=stop).")
        tqdm.write(f"WARNING: {message}")


RUNNERS = {"prompts": run_prompts, "candidates": run_candidates, "judge": run_judge}


def run_generation_stages(run_dir: str, t: int, stages: list[str]) -> None:
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    todo = [s for s in stages if not rd.is_done(t, s)]
    if not todo:
        return
    rd.round_dir(t).mkdir(parents=True, exist_ok=True)
    gen = load_generator(cfg, rd.policy(cfg, t))
    inputs = {
        "prompts": [seed_path(cfg.data.ift_path, "ift"), rd.policy(cfg, t)],
        "candidates": [rd.output(t, "prompts"), rd.policy(cfg, t)],
        "judge": [rd.output(t, "candidates"), rd.policy(cfg, t)],
    }
    for stage in todo:
        start = time.perf_counter()
        entry = RUNNERS[stage](gen, cfg, rd, t)
        rd.mark_done(t, stage, inputs[stage], seconds=round(time.perf_counter() - start, 3), **entry)
        tqdm.write(f"[round {t}] {stage}: {entry}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("stages", nargs="+", choices=GENERATION_STAGES)
    args = parser.parse_args(argv)
    die_with_parent()
    try:
        run_generation_stages(args.run_dir, args.round, args.stages)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
