"""`selfreward sweep`: run every combination of swept settings, each in its own run directory.

    selfreward sweep recipe=tiny update=dpo,sft seed=0,1 rounds=2 sweep_dir=runs/sweep

Sweeps use Hydra's grammar (`a=1,2`, `range(0,3)`, `choice(x,y)`). Every combination is composed
and validated before anything runs; each runs as `selfreward run ... run_dir=<sweep_dir>/<a=1,b=x>`
in its own process (its training stages under accelerate launch as usual). A combination whose run
already finished is skipped, a failed one is reported at the end without stopping the others, and a
killed sweep rerun continues where it stopped (each run resumes stage by stage).

Runs whose init-shaping settings are identical (the settings `selfreward.round.INIT_SETTINGS` names:
the same seed (unless `init.seed` sets the init's own), model, data, init budget...) share one M1:
the first trains it, the others start from its finished `init/` (and `base_model/`, `testbed/`),
hard-linked where the filesystem allows, with `shared_from` recorded in their init manifest. An arm
of an ablation then costs only its rounds.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from selfreward.config import compose, load_frozen, to_yaml
from selfreward.errors import ConfigError
from selfreward.files import atomic_dir, write_json
from selfreward.models import MODELS, cached
from selfreward.resume import first_affected, flatten
from selfreward.round import StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, TestbedFamily

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def expand(overrides: list[str]) -> tuple[list[str], dict[str, str], list[dict[str, str]], str]:
    """(fixed overrides, the same as {key: value}, one {key: value} per combination, sweep_dir)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed, settings, swept, sweep_dir = [], {}, {}, "runs/sweep"
        for text, o in zip(overrides, parsed):
            if o.key_or_group == "sweep_dir":
                sweep_dir = str(o.value())
            elif o.is_sweep_override():
                swept[o.key_or_group] = list(o.sweep_string_iterator())
            else:
                fixed.append(text)
                settings[o.key_or_group] = text.split("=", 1)[1]
    except HydraException as e:
        raise ConfigError(f"Cannot expand the sweep: {e}") from None
    combos = [dict(zip(swept, values)) for values in itertools.product(*swept.values())]
    return fixed, settings, combos, sweep_dir


def run_name(combo: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items()) or "run"


def init_key(cfg: Config) -> str:
    """The settings that shape M1, as text: two runs with equal keys train the same init. The testbed's
    data paths point into each run's own folder; its data is shaped by the testbed settings instead."""
    flat = flatten(yaml.safe_load(to_yaml(cfg)))
    if flat.get("model.name_or_path") in MODELS:  # a run's frozen config holds the fetched path instead
        flat["model.name_or_path"] = str(cached(flat["model.name_or_path"]))
    derived = ("data.ift_path", "data.eft_path") if cfg.testbed.enabled else ()
    if cfg.init.seed is not None and not (cfg.testbed.enabled and cfg.testbed.family is TestbedFamily.strings):
        derived += ("seed",)  # the init has its own seed, and its data do not depend on the run's
    return json.dumps({k: v for k, v in sorted(flat.items()) if first_affected(k) == StageName.init and k not in derived})


def finished_inits(root: Path) -> dict[str, RunDir]:
    """init key -> a run directory under `root` whose init is finished (from any earlier sweep)."""
    found = {}
    for config in sorted(root.glob("*/config.yaml")):
        rd = RunDir(config.parent)
        if rd.is_done(None, StageName.init) and not rd.problem(None, StageName.init):
            found.setdefault(init_key(load_frozen(rd.root)), rd)
    return found


def share_init(source: RunDir, target: RunDir) -> bool:
    """Give `target` the finished init of `source` (hard links, or copies across filesystems) unless it
    has one; the init manifest entry is copied with `shared_from`. True when something was shared."""
    if not source.is_done(None, StageName.init) or target.is_done(None, StageName.init) or target.init_dir.exists():
        return False
    for part in ("base_model", "testbed"):
        if (source.root / part).is_dir() and not (target.root / part).exists():
            _link_tree(source.root / part, target.root / part)
    with atomic_dir(target.model(None)) as tmp:
        _link_tree(source.model(None), tmp, exist_ok=True)
    entry = {**source.manifest(None)[StageName.init], "shared_from": str(source.root)}
    write_json(target.init_dir / "manifest.json", {StageName.init: entry})
    return True


def _link_tree(src: Path, dst: Path, exist_ok: bool = False) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=exist_ok)


def is_complete(cfg: Config) -> bool:
    last = RunDir(cfg.run_dir).round_dir(cfg.rounds)
    return (last / "metrics.json").is_file() and (not cfg.eval.enabled or (last / "eval.json").is_file())


def sweep(overrides: list[str]) -> int:
    """Run the combinations; a sweep_dir may take several sweeps (the arms of one ablation, e.g. one
    sweep over variants and another for the oracle): sweep.json lists every run of all of them, and
    a run with an init already trained there for the same settings starts from it."""
    fixed, settings, combos, sweep_dir = expand(overrides)
    root = Path(sweep_dir)
    plans = []
    for combo in combos:
        # quoted: the directory name holds '=' and ',', which Hydra's grammar would otherwise parse
        args = [*fixed, *(f"{k}={v}" for k, v in combo.items()), f"run_dir='{root / run_name(combo)}'"]
        plans.append((combo, args, compose(args)))  # a bad combination stops the sweep before any run
    root.mkdir(parents=True, exist_ok=True)
    earlier = json.loads((root / "sweep.json").read_text())["runs"] if (root / "sweep.json").is_file() else []
    ours = {run_name(combo) for combo in combos}
    results = [r for r in earlier if r["name"] not in ours]
    inits = finished_inits(root)
    for i, (combo, args, cfg) in enumerate(plans, 1):
        console.rule(f"sweep {i}/{len(plans)}: {run_name(combo)}")
        rd, key = RunDir(cfg.run_dir), init_key(cfg)
        if key in inits and share_init(inits[key], rd):
            console.print(f"M1 shared from {inits[key].root} (same init settings)")
        if is_complete(cfg):
            status = "done (skipped)"
        else:
            code = subprocess.run([sys.executable, "-m", "selfreward", "run", *args]).returncode
            status = "done" if code == 0 and is_complete(cfg) else f"failed (exit {code})"
        if rd.is_done(None, StageName.init):
            inits.setdefault(key, rd)
        results.append({"name": run_name(combo), "overrides": {**settings, **combo}, "swept": list(combo),
                        "run_dir": cfg.run_dir, "status": status})
        write_json(root / "sweep.json", {"runs": results})
    table = Table(title=f"sweep {root}")
    for column in ("run", "status", "run_dir"):
        table.add_column(column)
    for r in results[len(results) - len(plans):]:
        table.add_row(r["name"], r["status"], r["run_dir"])
    console.print(table)
    failed = [r["name"] for r in results[len(results) - len(plans):] if r["status"].startswith("failed")]
    if failed:
        names = ", ".join(failed)
        console.print(f"[red]{len(failed)} of {len(plans)} runs failed: {names}; rerun the sweep to retry them.")
    return 1 if failed else 0
