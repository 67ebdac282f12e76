"""Run a round's generation stages (prompts, candidates, judge, and the stages variants add) in one
process, each model loaded once.

The orchestrator starts this as a subprocess so generation memory is gone before training starts:

    python -m selfreward.stages --run-dir runs/tiny --round 1 prompts candidates judge

Each stage reads its inputs from the round folder, writes its output atomically and records itself
in the round's manifest; a stage already in the manifest is skipped, so rerunning is safe.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from dataclasses import replace
from functools import partial

from tqdm.auto import tqdm

from selfreward import testbed, testbed_constraints
from selfreward.candidates import sample_candidates
from selfreward.config import load_frozen
from selfreward.data import heldout_prompts, seed_instructions, seed_path
from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.generation import distributed, load_generator, parallel
from selfreward.generation.base import Generator
from selfreward.metrics import score_histogram
from selfreward.process import stage_main
from selfreward.prompts import evolve_prompts, generate_prompts
from selfreward.round import Runner, StageName, generation_stage_names, row, stage_seed
from selfreward.rundir import ChunkLog, RunDir
from selfreward.schema import Config, JudgeConfig, OnProblem, TestbedFamily


def run_prompts(gen: Generator, cfg: Config, rd: RunDir, t: int, stage: StageName = StageName.prompts) -> dict:
    instructions = seed_instructions(cfg)
    # prompts.seed_share: this share of the set comes from the seed data, the rest is generated
    n_seed = min(round(cfg.prompts.num_prompts * cfg.prompts.seed_share), len(instructions))
    log = ChunkLog(rd.output(t, stage))
    _, kept, stats = log.resume()
    seeds_committed = any(r.get("source") == "seed" for r in kept)  # a kill came after the last chunk
    kept = [r for r in kept if r.get("source") != "seed"]
    records, stats = generate_prompts(
        gen, replace(cfg.prompts, num_prompts=cfg.prompts.num_prompts - n_seed), instructions,
        stage_seed(cfg, t, StageName.prompts), resumed=([r["prompt"] for r in kept], stats), on_pass=log.append,
        reject=testbed.task_filter(cfg, rd) if cfg.testbed.enabled else None,
        earlier=[p["prompt"] for r in range(1, t) for p in read_jsonl(rd.output(r, StageName.prompts))],
        heldout=[p["prompt"] for p in heldout_prompts(cfg)],
    )
    if not records and not n_seed:  # with seed prompts the round still has something to answer
        log.discard()
        raise ConfigError(f"Round {t}: the model wrote no usable prompt ({stats}); loosen prompts.* filters.")
    seeds = []
    if n_seed:
        drawn = random.Random(stage_seed(cfg, t, StageName.prompts)).sample(instructions, n_seed)
        seeds = [{"id": f"s{i:05d}", "prompt": p, "source": "seed"} for i, p in enumerate(drawn)]
        if not seeds_committed:
            log.append(seeds, stats)
    constrained = cfg.testbed.enabled and cfg.testbed.family is TestbedFamily.constraints
    if cfg.prompts.evolve:  # rewrites only the generated prompts, after all are committed
        records, evolve_stats = evolve_prompts(gen, cfg.prompts, records, stage_seed(cfg, t, StageName.prompts) + 1)
        stats = {**stats, **evolve_stats}
    if constrained:  # after all are committed, so a resumed stage draws the same constraints
        seed = stage_seed(cfg, t, StageName.prompts)
        records = testbed_constraints.constrain_prompts(records, cfg.testbed.tasks, seed)
        seeds = testbed_constraints.constrain_prompts(seeds, cfg.testbed.tasks, seed)
    if cfg.prompts.evolve or constrained:
        log.finish(records + seeds)
    else:
        log.finish()
    return {"records": len(records) + len(seeds), "seed_prompts": n_seed, **stats}


def run_candidates(gen: Generator, cfg: Config, rd: RunDir, t: int, stage: str = StageName.candidates) -> dict:
    """N samples per prompt of round t from the loaded model, into the file of `stage`."""
    prompts = read_jsonl(rd.output(t, row(stage).inputs[0]))
    fn = partial(sample_candidates, gen, cfg.generation)
    log = ChunkLog(rd.output(t, stage))
    records = log.run_chunks(prompts, cfg.generation.batch_size, stage_seed(cfg, t, stage), fn, stage)
    log.finish()
    return {"records": len(records)}


def run_judge(gen: Generator | None, cfg: Config, rd: RunDir, t: int, stage: str = StageName.judge) -> dict:
    """Judge the candidates the stage reads with its row's judge (the round's by default), the way the
    variant judges (a variant may score without a model; so does judge.method=oracle)."""
    judge: JudgeConfig = row(stage).judge(cfg) if row(stage).judge else cfg.judge
    candidates = read_jsonl(rd.output(t, row(stage).inputs[0]))
    fn = partial(cfg.variant.judge, gen, judge)
    log = ChunkLog(rd.output(t, stage))
    records = log.run_chunks(candidates, cfg.generation.batch_size, stage_seed(cfg, t, stage), fn, stage)
    try:
        check_judge_health(judge, records, t)
    except ConfigError:
        log.discard()  # judged again on the rerun, under the settings the user changes
        raise
    log.finish()
    return {"records": len(records), "candidates_unscored": sum(r["score"] is None for r in records)}


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


# The generation worker's runners, by the stage table's `runner` column (a row's own `run` instead,
# where it has one); each is called as runner(generator, cfg, rd, t, stage) with the model of the
# stage's `model` column loaded.
RUNNERS = {Runner.prompts: run_prompts, Runner.sample: run_candidates, Runner.judge: run_judge}


def stage_inputs(cfg: Config, rd: RunDir, t: int, stage: str) -> list:
    """What the manifest records a stage ran on: its input files (the seed set for prompts) and its model."""
    files = [rd.output(t, s) for s in row(stage).inputs] or [seed_path(cfg.data.ift_path, "ift")]
    model = rd.stage_model(cfg, t, stage)
    return [*files, model] if model else files


def run_generation_stages(run_dir: str, t: int, stages: list[str]) -> None:
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    todo = [row(s).name for s in stages if not rd.is_done(t, s)]
    rd.round_dir(t).mkdir(parents=True, exist_ok=True)
    gen, loaded = None, None
    for stage in todo:
        model = rd.stage_model(cfg, t, stage)
        if model is not None and model != loaded:
            gen = None  # one model in memory at a time
            gc.collect()
            gen, loaded = load_generator(cfg, model), model
        start = time.perf_counter()
        entry = (row(stage).run or RUNNERS[row(stage).runner])(gen, cfg, rd, t, stage)
        rd.mark_done(t, stage, stage_inputs(cfg, rd, t, stage), seconds=round(time.perf_counter() - start, 3), **entry)
        tqdm.write(f"[round {t}] {stage}: {entry}")


def main(argv: list[str] | None = None) -> int:
    def run(args) -> None:
        if not distributed():
            return run_generation_stages(args.run_dir, args.round, args.stages)
        # launch.generation_processes > 1: rank 0 runs the stages, the others serve it
        if parallel.is_follower():
            return parallel.follow(load_frozen(args.run_dir))
        try:
            run_generation_stages(args.run_dir, args.round, args.stages)
        finally:
            parallel.stop_followers()

    return stage_main(argv, __doc__, run, lambda p: p.add_argument("stages", nargs="+", choices=generation_stage_names()))


if __name__ == "__main__":
    code = main()
    if distributed():
        parallel.exit_now(code)
    sys.exit(code)
