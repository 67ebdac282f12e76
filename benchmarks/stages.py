"""A round's time stage by stage, side by side for several run directories (a profile before and after
a change), read from each round's manifest (the seconds every stage records when it finishes).

    python -m benchmarks.stages before=runs/speed/old after=runs/speed/new [--round 1]

Prints a markdown table: one row per stage and the round's total, one column per run, and the ratio
of the first run to the last ("all stages" sums them: the round without its launches between stages).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def stage_seconds(run_dir: Path, t: int) -> dict[str, float]:
    manifest = run_dir / f"round_{t}" / "manifest.json"
    if not manifest.is_file():
        print(f"{manifest}: no such file (has round {t} of {run_dir} run?)", file=sys.stderr)
        sys.exit(2)
    return {stage: entry["seconds"] for stage, entry in json.loads(manifest.read_text()).items()
            if entry.get("seconds") is not None}


def table(runs: dict[str, dict[str, float]]) -> str:
    names = list(runs)
    stages = list(dict.fromkeys(s for seconds in runs.values() for s in seconds))
    lines = ["| stage | " + " | ".join(f"{n} (s)" for n in names) + f" | {names[0]} / {names[-1]} |",
             "| --- |" + " --- |" * (len(names) + 1)]
    for stage in [*stages, "round"]:
        values = [sum(runs[n].values()) if stage == "round" else runs[n].get(stage) for n in names]
        shown = ["–" if v is None else f"{v:.1f}" for v in values]
        ratio = f"{values[0] / values[-1]:.1f}×" if values[0] and values[-1] and values[-1] >= 0.05 else "–"
        label = "**all stages**" if stage == "round" else stage
        lines.append(f"| {label} | " + " | ".join(shown) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--round", type=int, default=1)
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: write LABEL=RUN_DIR")
        runs[label] = stage_seconds(Path(path), args.round)
    print(table(runs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
