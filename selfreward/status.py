"""`selfreward status run_dir=X`: each stage of each round as done / partial (k of n) / not started."""

from __future__ import annotations

from rich.table import Table

from selfreward.config import Config, UpdateMethod
from selfreward.rundir import ROUND_STAGES, ChunkLog, RunDir, last_checkpoint


def _training(rd: RunDir, t: int, stage: str) -> str:
    if rd.is_done(t, stage):
        entry = rd.manifest(t)[stage]
        return "done (skipped: too few pairs)" if entry.get("skipped") else f"done ({entry.get('steps')} steps)"
    checkpoint = last_checkpoint(rd.stage_dir(t) / "train")
    return f"partial (checkpoint at step {checkpoint.rsplit('-', 1)[1]})" if checkpoint else "not started"


def stage_states(cfg: Config, rd: RunDir, t: int) -> dict[str, str]:
    states = {}
    done = {stage: entry.get("records") for stage, entry in rd.manifest(t).items()}
    expected = {
        "prompts": cfg.prompts.num_prompts,
        "candidates": (done.get("prompts") or 0) * cfg.generation.num_candidates or None,
        "judge": done.get("candidates"),
    }
    for stage in ROUND_STAGES:
        if stage == "update":
            states[stage] = _training(rd, t, "update")
        elif stage == "evaluate" and not cfg.eval.enabled:
            states[stage] = "disabled"
        elif stage in done:
            states[stage] = f"done ({done[stage]} records)"
        elif stage in expected and (k := ChunkLog(rd.output(t, stage)).committed()) is not None:
            states[stage] = f"partial ({k} of {expected[stage] or '?'} records)"
        else:
            states[stage] = "not started"
    return states


def status_table(cfg: Config, rd: RunDir) -> Table:
    update = "DPO" if cfg.update.method is UpdateMethod.dpo else "SFT"
    init = "skipped (init.skip)" if cfg.init.skip else _training(rd, 0, "init")
    table = Table(title=f"{rd.root}: {cfg.rounds} rounds, update={update}; init (M1): {init}")
    for column in ("round", *ROUND_STAGES):
        table.add_column(column)
    for t in range(1, max([cfg.rounds, *rd.rounds()]) + 1):
        table.add_row(str(t), *stage_states(cfg, rd, t).values())
    return table
