"""`selfreward status run_dir=X`: each stage of each round as done / partial (k of n) / not started."""

from __future__ import annotations

from rich.table import Table

from selfreward.config import Config, UpdateMethod
from selfreward.rundir import ChunkLog, RunDir, last_checkpoint
from selfreward.variants import round_stages

TRAINING_STAGES = ("update", "lookahead")


def _training(rd: RunDir, t: int, stage: str) -> str:
    if rd.is_done(t, stage):
        entry = rd.manifest(t)[stage]
        return "done (skipped: too few pairs)" if entry.get("skipped") else f"done ({entry.get('steps')} steps)"
    checkpoint = last_checkpoint(rd.trained_model(t, stage).with_name("train"))
    return f"partial (checkpoint at step {checkpoint.rsplit('-', 1)[1]})" if checkpoint else "not started"


def stage_states(cfg: Config, rd: RunDir, t: int) -> dict[str, str]:
    states = {}
    done = {stage: entry.get("records") for stage, entry in rd.manifest(t).items()}
    per_prompt = (done.get("prompts") or 0) * cfg.generation.num_candidates or None
    expected = {
        "prompts": cfg.prompts.num_prompts, "candidates": per_prompt, "anchor_candidates": per_prompt,
        "future_candidates": per_prompt, "judge": done.get("candidates"), "second_judge": done.get("candidates"),
        "meta_judge": None, "anchor_judge": done.get("anchor_candidates"),
        "future_judge": done.get("future_candidates"),
    }
    for stage in round_stages(cfg):
        if stage in TRAINING_STAGES:
            states[stage] = _training(rd, t, stage)
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
    variant = "" if cfg.variant.name.value == "base" else f", variant={cfg.variant.name.value}"
    table = Table(title=f"{rd.root}: {cfg.rounds} rounds, update={update}{variant}; init (M1): {init}")
    for column in ("round", *round_stages(cfg)):
        table.add_column(column)
    for t in range(1, max([cfg.rounds, *rd.rounds()]) + 1):
        table.add_row(str(t), *stage_states(cfg, rd, t).values())
    return table
