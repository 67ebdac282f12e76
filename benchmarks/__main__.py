"""Benchmark suite: each row is a ratio measured side by side in one process on the same data.

    python -m benchmarks                                  # tiny model on this machine, ~2 minutes on 2 cores
    python -m benchmarks --model /models/Qwen2.5-0.5B-Instruct --device cuda
    python -m benchmarks --size minimal --out /tmp/results.json   # seconds: keeps the suite working
    python -m benchmarks --show                           # results.json as the markdown table of docs/benchmarks.md

Writes `benchmarks/results.json`: {"machine": ..., "rows": [{"name", "value", "target", "met", "detail"}]}
and prints the table. A row is met when its value is inside its target and its gate (if any) holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import suite

RESULTS = Path(__file__).resolve().parent / "results.json"


def table(rows: list[dict]) -> Table:
    t = Table(title="selfreward benchmarks (measured side by side)")
    for column in ("row", "value", "target", "met", "detail"):
        t.add_column(column, overflow="fold")
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        t.add_row(r["name"], "n/a" if r["value"] is None else f"{r['value']:.3g}", r["target"], met, r["detail"])
    return t


def markdown(result: dict, command: str = "python -m benchmarks") -> str:
    """The results as the table docs/benchmarks.md shows, with the line that introduces it."""
    lines = [f"Measured on this machine ({result['machine']}; `{command}`, {result['seconds']} s):", "",
             "| row | value | target | met | detail |", "| --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        value = "–" if r["value"] is None else f"{r['value']:.3g}"
        lines.append(f"| {r['name']} | {value} | {r['target']} | {met} | {r['detail']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(suite.SIZES), default="tiny")
    parser.add_argument("--model", help="a checkpoint with a chat template (default: tiny model, short init)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="selfreward config overrides, e.g. generation.batch_size=16")
    parser.add_argument("--show", action="store_true", help="print --out's results as a markdown table; run nothing")
    args = parser.parse_args(argv)
    if args.show:
        print(markdown(json.loads(args.out.read_text())), end="")
        return 0
    console = Console(stderr=True)
    start = time.perf_counter()
    rows = [r.as_dict() for r in suite.run(args.size, args.model, args.device, args.overrides, progress=console.log)]
    result = {"machine": suite.machine(args.device), "size": args.size, "seconds": round(time.perf_counter() - start),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console(width=160).print(table(rows))
    console.log(f"{result['machine']}; {result['seconds']} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
