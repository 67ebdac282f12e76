"""Rerunning a run: which changed settings a finished stage refuses, `restart_from`, and the check
that every finished stage's outputs are still what it wrote.

Each setting shapes a first stage (the stage table's `settings` column, `selfreward.round`). A rerun
whose changed settings shaped a finished stage is refused with the diff and the `restart_from=` that
redoes that stage and everything after it; `restart_from` moves those outputs aside, nothing deleted.
"""

from __future__ import annotations

import yaml
from rich.console import Console

from selfreward.config import to_yaml
from selfreward.errors import ConfigError
from selfreward.files import atomic_write_text
from selfreward.round import StageName, round_stage_names, row, setting_stages
from selfreward.rundir import RunDir
from selfreward.schema import Config
from selfreward.variants import migrated

console = Console(stderr=True)


def stages() -> tuple[str, ...]:
    return (StageName.init, *round_stage_names())


def freeze(cfg: Config, rd: RunDir, restart_from: str | None = None) -> None:
    """Write the resolved config. On a rerun, refuse changed settings that shaped finished stages,
    unless `restart_from` names where to start again (that stage and all after it are superseded)."""
    restart = parse_restart(restart_from) if restart_from else None
    if rd.config.is_file():
        old, new = flatten(_migrated(yaml.safe_load(rd.config.read_text()))), flatten(yaml.safe_load(to_yaml(cfg)))
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        stale = {k: first_affected(k) for k in changed if first_affected(k)}
        stale = {k: s for k, s in stale.items() if done_from(rd, s)}
        order = stages()
        earliest = min(stale.values(), key=order.index) if stale else None
        too_late = restart is not None and earliest and (
            restart[0] > 1 or order.index(restart[1]) > order.index(earliest)
        )
        if stale and (restart is None or too_late):
            diff = "\n".join(f"  {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in stale)
            raise ConfigError(
                f"{rd.config} was written with other settings that finished stages depend on:\n{diff}\n"
                f"Repeat the original settings to resume, use a new run_dir, or add restart_from={earliest} "
                "to redo that stage and everything after it with the new settings."
            )
    if restart is not None:
        moved = rd.restart_from(*restart)
        console.print(f"restart_from={restart_from}: moved {len(moved)} outputs to {rd.root / 'superseded'}")
    text = to_yaml(cfg)
    if not rd.config.is_file() or rd.config.read_text() != text:
        atomic_write_text(rd.config, text)


def first_affected(key: str) -> str | None:
    """The first stage a setting shapes. Settings the stage table does not name (rounds, run_dir,
    launch.*, backend, vllm.*) change how or how long the run goes on, not what a finished stage wrote."""
    shaped = setting_stages()
    for prefix in (key, key.split(".")[0]):
        if prefix in shaped:
            return shaped[prefix]
    return None


def _migrated(old: dict) -> dict:
    """A config.yaml's settings as this version writes them (`selfreward.variants.migrated`)."""
    return {**old, "variant": migrated(old["variant"])} if isinstance(old.get("variant"), dict) else old


def done_from(rd: RunDir, stage: str) -> bool:
    """Whether `stage` or any later stage has finished (in round 1, or init)."""
    if stage == StageName.init:
        return rd.is_done(0, StageName.init) or bool(rd.manifest(1))
    order = stages()
    return any(rd.is_done(1, s) for s in order[order.index(stage) :])


def parse_restart(value: str) -> tuple[int, StageName]:
    """'judge' -> (1, 'judge'); 'round_2.judge' -> (2, 'judge'); 'init' -> (0, 'init')."""
    where, _, stage = value.rpartition(".")
    number = where.removeprefix("round_")
    if stage == StageName.init and not where:
        return 0, StageName.init
    names = round_stage_names()
    if stage in names and (not where or (where.startswith("round_") and number.isdigit() and int(number) >= 1)):
        return (int(number) if where else 1), row(stage).name
    raise ConfigError(
        f"Bad value for 'restart_from': {value!r}. Valid: init, or a stage ({', '.join(names)}) "
        "optionally prefixed by its round, e.g. restart_from=round_2.judge."
    )


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def verify_finished(cfg: Config, rd: RunDir) -> None:
    """Before any finished stage is skipped or read, check that its outputs are what it wrote."""
    rd.verify(None, StageName.init)
    for t in rd.rounds():
        for stage in round_stage_names():
            rd.verify(t, stage)


