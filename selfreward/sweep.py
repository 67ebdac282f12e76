"""`selfreward sweep`: run every combination of swept settings, each in its own run directory.

    selfreward sweep recipe=tiny update=dpo,sft seed=0,1 rounds=2 sweep_dir=runs/sweep

Sweeps use Hydra's grammar (`a=1,2`, `range(0,3)`, `choice(x,y)`). Every combination is composed
and validated before anything runs; each runs as `selfreward run ... run_dir=<sweep_dir>/<a=1,b=x>`
in its own process (its training stages under accelerate launch as usual). A combination whose run
already finished is skipped, a failed one is reported at the end without stopping the others, and a
killed sweep rerun continues where it stopped (each run resumes stage by stage).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from selfreward.config import compose
from selfreward.errors import ConfigError
from selfreward.rundir import RunDir, write_json
from selfreward.schema import Config

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def expand(overrides: list[str]) -> tuple[list[str], list[dict[str, str]], str]:
    """(fixed overrides, one {key: value} per combination, sweep_dir)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed, swept, sweep_dir = [], {}, "runs/sweep"
        for text, o in zip(overrides, parsed):
            if o.key_or_group == "sweep_dir":
                sweep_dir = str(o.value())
            elif o.is_sweep_override():
                swept[o.key_or_group] = list(o.sweep_string_iterator())
            else:
                fixed.append(text)
    except HydraException as e:
        raise ConfigError(f"Cannot expand the sweep: {e}") from None
    combos = [dict(zip(swept, values)) for values in itertools.product(*swept.values())]
    return fixed, combos, sweep_dir


def run_name(combo: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items()) or "run"


def is_complete(cfg: Config) -> bool:
    last = RunDir(cfg.run_dir).round_dir(cfg.rounds)
    return (last / "metrics.json").is_file() and (not cfg.eval.enabled or (last / "eval.json").is_file())


def sweep(overrides: list[str]) -> int:
    fixed, combos, sweep_dir = expand(overrides)
    root = Path(sweep_dir)
    plans = []
    for combo in combos:
        # quoted: the directory name holds '=' and ',', which Hydra's grammar would otherwise parse
        args = [*fixed, *(f"{k}={v}" for k, v in combo.items()), f"run_dir='{root / run_name(combo)}'"]
        plans.append((combo, args, compose(args)))  # a bad combination stops the sweep before any run
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (combo, args, cfg) in enumerate(plans, 1):
        console.rule(f"sweep {i}/{len(plans)}: {run_name(combo)}")
        if is_complete(cfg):
            status = "done (skipped)"
        else:
            code = subprocess.run([sys.executable, "-m", "selfreward", "run", *args]).returncode
            status = "done" if code == 0 and is_complete(cfg) else f"failed (exit {code})"
        results.append({"name": run_name(combo), "overrides": combo, "run_dir": cfg.run_dir, "status": status})
        write_json(root / "sweep.json", {"fixed": fixed, "swept": list(combos[0]) if combos else [], "runs": results})
    table = Table(title=f"sweep {root}")
    for column in ("run", "status", "run_dir"):
        table.add_column(column)
    for r in results:
        table.add_row(r["name"], r["status"], r["run_dir"])
    console.print(table)
    failed = [r["name"] for r in results if r["status"].startswith("failed")]
    if failed:
        names = ", ".join(failed)
        console.print(f"[red]{len(failed)} of {len(results)} runs failed: {names}; rerun the sweep to retry them.")
    return 1 if failed else 0
