"""`selfreward status run_dir=X`: each stage of each round as done / partial (k of n) / not started."""

from __future__ import annotations

from rich.table import Table

from selfreward.files import last_checkpoint
from selfreward.round import Runner, StageName, round_stages, row, table, training_stage_names
from selfreward.rundir import ChunkLog, RunDir
from selfreward.schema import Config, UpdateMethod


def _training(rd: RunDir, t: int, stage: str) -> str:
    if problem := rd.problem(t, stage):
        return f"damaged: {problem}"
    if rd.is_done(t, stage):
        entry = rd.manifest(t)[stage]
        return "done (skipped: too few pairs)" if entry.get("skipped") else f"done ({entry.get('steps')} steps)"
    checkpoint = last_checkpoint(rd.trained_model(t, stage).with_name("train"))
    return f"partial (checkpoint at step {checkpoint.rsplit('-', 1)[1]})" if checkpoint else "not started"


def expected_records(cfg: Config, done: dict, stage: str) -> int | None:
    """How many records a finished generation stage will hold, by its runner: None when unknown."""
    stage_row = row(stage)
    if stage_row.runner is Runner.prompts:
        return cfg.prompts.num_prompts
    if stage_row.runner is Runner.sample:
        return (done.get(stage_row.inputs[0]) or 0) * cfg.generation.num_candidates or None
    if stage_row.runner is Runner.judge:
        return done.get(stage_row.inputs[0])
    return None


def columns(cfg: Config, rounds: int) -> list[str]:
    """The stages any round of this config runs, and those of the paper's round it leaves out."""
    active = {s.name for t in range(1, rounds + 1) for s in round_stages(cfg, t)}
    return [s.name for s in table() if s.name in active or s.name in cfg.variant.skips]


def stage_states(cfg: Config, rd: RunDir, t: int, shown: list[str]) -> dict[str, str]:
    states = {}
    done = {stage: entry.get("records") for stage, entry in rd.manifest(t).items()}
    runs = {s.name for s in round_stages(cfg, t)}
    for stage in shown:
        if stage not in runs:
            skipped = cfg.variant.skips.get(stage)
            states[stage] = f"skipped: {skipped}" if skipped else "-"
        elif stage in training_stage_names():
            states[stage] = _training(rd, t, stage)
        elif stage == StageName.evaluate and not cfg.eval.enabled:
            states[stage] = "disabled"
        elif problem := rd.problem(t, stage):
            states[stage] = f"damaged: {problem}"
        elif stage in done:
            states[stage] = f"done ({done[stage]} records)"
        elif (k := ChunkLog(rd.output(t, stage)).committed()) is not None:
            states[stage] = f"partial ({k} of {expected_records(cfg, done, stage) or '?'} records)"
        else:
            states[stage] = "not started"
    return states


def status_table(cfg: Config, rd: RunDir) -> Table:
    update = "DPO" if cfg.update.method is UpdateMethod.dpo else "SFT"
    init = "skipped (init.skip)" if cfg.init.skip else _training(rd, 0, StageName.init)
    variant = "" if cfg.variant.name == "base" else f", variant={cfg.variant.name}"
    out = Table(title=f"{rd.root}: {cfg.rounds} rounds, update={update}{variant}; init (M1): {init}")
    rounds = max([cfg.rounds, *rd.rounds()])
    shown = columns(cfg, rounds)
    for column in ("round", *shown):
        out.add_column(column)
    for t in range(1, rounds + 1):
        out.add_row(str(t), *stage_states(cfg, rd, t, shown).values())
    return out
