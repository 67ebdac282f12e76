"""Benchmark suite: each row is a ratio measured side by side in one process on the same data.

    python -m benchmarks                                  # tiny model on this machine, ~2 minutes on 2 cores
    python -m benchmarks --model /models/Qwen2.5-0.5B-Instruct --device cuda
    python -m benchmarks --size minimal --out /tmp/results.json   # seconds: keeps the suite working

Writes `benchmarks/results.json`: {"machine": ..., "rows": [{"name", "ratio", "target",
"higher_is_better", "detail"}]} and prints the table.
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
    t = Table(title="selfreward benchmarks (ratios measured side by side)")
    for column in ("row", "ratio", "target", "met", "detail"):
        t.add_column(column, overflow="fold")
    for r in rows:
        met = "-" if r["target"] is None or r["ratio"] is None else (
            "yes" if (r["ratio"] >= r["target"]) == r["higher_is_better"] or r["ratio"] == r["target"] else "NO")
        target = "-" if r["target"] is None else ("≥ " if r["higher_is_better"] else "≤ ") + str(r["target"])
        t.add_row(r["name"], "n/a" if r["ratio"] is None else f"{r['ratio']:.3g}", target, met, r["detail"])
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(suite.SIZES), default="tiny")
    parser.add_argument("--model", help="a checkpoint with a chat template (default: tiny model, short init)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="selfreward config overrides, e.g. generation.batch_size=16")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    start = time.perf_counter()
    rows = suite.run(args.size, args.model, args.device, args.overrides, progress=console.log)
    result = {"machine": suite.machine(args.device), "size": args.size, "seconds": round(time.perf_counter() - start),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console(width=160).print(table(rows))
    console.log(f"{result['machine']}; {result['seconds']} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
