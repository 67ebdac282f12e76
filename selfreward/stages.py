"""Run a round's generation stages (prompts, candidates, judge, and the stages variants add) in one
process, each model loaded once.

The orchestrator starts this as a subprocess so generation memory is gone before training starts:

    python -m selfreward.stages --run-dir runs/tiny --round 1 prompts candidates judge

Each stage reads its inputs from the round folder, writes its output atomically and records itself
in the round's manifest; a stage already in the manifest is skipped, so rerunning is safe.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from dataclasses import replace
from functools import partial

from tqdm.auto import tqdm

from selfreward import testbed, variants
from selfreward.candidates import sample_candidates
from selfreward.config import Config, ConfigError, JudgeConfig, OnProblem, load_frozen
from selfreward.data import seed_instructions, seed_path
from selfreward.generation import Generator, distributed, load_generator
from selfreward.judge import judge_candidates
from selfreward.metrics import score_histogram
from selfreward.process import die_with_parent
from selfreward.prompts import evolve_prompts, generate_prompts
from selfreward.rundir import ChunkLog, RunDir, read_jsonl
from selfreward.variants.meta import run_meta_judge

# Order matters only for the per-stage seeds: append new stages at the end.
GENERATION_STAGES = ("prompts", "candidates", "judge", "second_judge", "meta_judge", "anchor_candidates",
                     "anchor_judge", "future_candidates", "future_judge")


def stage_seed(cfg: Config, t: int, stage: str) -> int:
    """Deterministic per (run seed, round, stage), so rerunning one stage reproduces it."""
    return cfg.seed * 100_003 + t * 101 + GENERATION_STAGES.index(stage)


def run_prompts(gen: Generator, cfg: Config, rd: RunDir, t: int) -> dict:
    instructions = seed_instructions(cfg)
    # seed-anchored prompts: this share of the set comes from the seed data, the rest is generated
    n_seed = min(round(cfg.prompts.num_prompts * cfg.prompts.seed_share), len(instructions))
    log = ChunkLog(rd.output(t, "prompts"))
    _, kept, stats = log.resume()
    seeds_committed = any(r.get("source") == "seed" for r in kept)  # a kill came after the last chunk
    kept = [r for r in kept if r.get("source") != "seed"]
    records, stats = generate_prompts(
        gen, replace(cfg.prompts, num_prompts=cfg.prompts.num_prompts - n_seed), instructions,
        stage_seed(cfg, t, "prompts"), resumed=([r["prompt"] for r in kept], stats), on_pass=log.append,
        reject=partial(testbed.why_not_a_task, cfg=cfg.testbed) if cfg.testbed.enabled else None,
    )
    if not records and not n_seed:  # with seed prompts the round still has something to answer
        log.discard()
        raise ConfigError(f"Round {t}: the model wrote no usable prompt ({stats}); loosen prompts.* filters.")
    seeds = []
    if n_seed:
        drawn = random.Random(stage_seed(cfg, t, "prompts")).sample(instructions, n_seed)
        seeds = [{"id": f"s{i:05d}", "prompt": p, "source": "seed"} for i, p in enumerate(drawn)]
        if not seeds_committed:
            log.append(seeds, stats)
    if cfg.prompts.evolve:  # rewrites only the generated prompts, after all are committed
        records, evolve_stats = evolve_prompts(gen, cfg.prompts, records, stage_seed(cfg, t, "prompts") + 1)
        stats = {**stats, **evolve_stats}
        log.finish(records + seeds)
    else:
        log.finish()
    return {"records": len(records) + len(seeds), "seed_prompts": n_seed, **stats}


def run_candidates(gen: Generator, cfg: Config, rd: RunDir, t: int, stage: str = "candidates") -> dict:
    """N samples per prompt of round t from the loaded model, into the file of `stage`."""
    prompts = read_jsonl(rd.output(t, "prompts"))
    fn = partial(sample_candidates, gen, cfg.generation)
    log = ChunkLog(rd.output(t, stage))
    records = log.run_chunks(prompts, cfg.generation.batch_size, stage_seed(cfg, t, stage), fn, stage)
    log.finish()
    return {"records": len(records)}


def run_judge(gen: Generator, cfg: Config, rd: RunDir, t: int, stage: str = "judge", judged: str = "candidates",
              judge: JudgeConfig | None = None) -> dict:
    """Judge the candidates in the file of `judged` with `judge` (the round's judge by default)."""
    judge = judge or cfg.judge
    candidates = read_jsonl(rd.output(t, judged))
    fn = partial(judge_candidates, gen, judge)
    log = ChunkLog(rd.output(t, stage))
    records = log.run_chunks(candidates, cfg.generation.batch_size, stage_seed(cfg, t, stage), fn, stage)
    try:
        check_judge_health(judge, records, t)
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


RUNNERS = {
    "prompts": run_prompts,
    "candidates": run_candidates,
    "judge": run_judge,
    "second_judge": lambda gen, cfg, rd, t: run_judge(gen, cfg, rd, t, "second_judge",
                                                      judge=variants.second_judge(cfg)),
    "meta_judge": run_meta_judge,
    "anchor_candidates": partial(run_candidates, stage="anchor_candidates"),
    "anchor_judge": partial(run_judge, stage="anchor_judge", judged="anchor_candidates"),
    "future_candidates": partial(run_candidates, stage="future_candidates"),
    "future_judge": partial(run_judge, stage="future_judge", judged="future_candidates"),
}


JUDGING_STAGES = ("judge", "second_judge", "meta_judge", "anchor_judge", "future_judge")


def stage_model(cfg: Config, rd: RunDir, t: int, stage: str) -> str:
    """M_t does every stage except sampling for the temporal variant (M1, and the look-ahead model) and,
    with `judge.model` set, judging (a fixed third-party judge instead of self-judging)."""
    if stage in JUDGING_STAGES and cfg.judge.model:
        return cfg.judge.model
    if stage == "anchor_candidates":
        return rd.initial(cfg)
    if stage == "future_candidates":
        return str(rd.lookahead_dir(t) / "model")
    return rd.policy(cfg, t)


def stage_inputs(cfg: Config, rd: RunDir, t: int, stage: str) -> list:
    files = {"prompts": seed_path(cfg.data.ift_path, "ift"), "candidates": rd.output(t, "prompts"),
             "anchor_candidates": rd.output(t, "prompts"), "future_candidates": rd.output(t, "prompts"),
             "anchor_judge": rd.output(t, "anchor_candidates"), "future_judge": rd.output(t, "future_candidates"),
             "meta_judge": rd.output(t, "judge")}
    return [files.get(stage, rd.output(t, "candidates")), stage_model(cfg, rd, t, stage)]


def run_generation_stages(run_dir: str, t: int, stages: list[str]) -> None:
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    todo = [s for s in stages if not rd.is_done(t, s)]
    rd.round_dir(t).mkdir(parents=True, exist_ok=True)
    gen, loaded = None, None
    for stage in todo:
        if stage_model(cfg, rd, t, stage) != loaded:
            gen = None  # one model in memory at a time
            gc.collect()
            loaded = stage_model(cfg, rd, t, stage)
            gen = load_generator(cfg, loaded)
        start = time.perf_counter()
        entry = RUNNERS[stage](gen, cfg, rd, t)
        rd.mark_done(t, stage, stage_inputs(cfg, rd, t, stage), seconds=round(time.perf_counter() - start, 3), **entry)
        tqdm.write(f"[round {t}] {stage}: {entry}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("stages", nargs="+", choices=GENERATION_STAGES)
    args = parser.parse_args(argv)
    die_with_parent()
    if distributed():  # launch.generation_processes > 1: rank 0 runs the stages, the others serve it
        from selfreward.generation import parallel

        if parallel.is_follower():
            parallel.follow(load_frozen(args.run_dir))
            return 0
    try:
        run_generation_stages(args.run_dir, args.round, args.stages)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if distributed():
            parallel.stop_followers()
    return 0


if __name__ == "__main__":
    code = main()
    if distributed():
        from selfreward.generation import parallel

        parallel.exit_now(code)
    sys.exit(code)
