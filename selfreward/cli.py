"""`selfreward` command line. Settings are Hydra overrides on a recipe from recipes/:

    selfreward run recipe=tiny update=sft rounds=2 generation.num_candidates=4 run_dir=/tmp/r
    selfreward run run_dir=/tmp/r judge.samples=5 restart_from=judge   # redo from round 1's judge
    selfreward config recipe=tiny judge=logprob      # print the resolved config and exit
    selfreward status /tmp/r                         # done / partial / not started, per stage
    selfreward sweep update=dpo,sft seed=0,1 rounds=2 sweep_dir=runs/sweep
    selfreward report runs/sweep                     # report.md + PNG plots (a run or a sweep)
    selfreward export runs/r --round 2 --questions q.jsonl --format mt_bench --out answers.jsonl

Exit codes: 0 done, 2 bad configuration or input (one message naming the key), 1 a stage failed.
"""

from __future__ import annotations

import argparse
import os
import sys

from selfreward.config import load_frozen, parse_command, to_yaml
from selfreward.errors import ConfigError
from selfreward.process import VERBOSE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="selfreward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="every stage's full output on the console, library warnings included (default: "
                             "one line per stage, the output in <run_dir>/logs/)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run (or resume) the self-rewarding loop"),
                            ("config", "print the resolved config")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. recipe=tiny update=sft rounds=3")
    p = sub.add_parser("status", help="show each stage of a run directory as done / partial / not started")
    p.add_argument("run_dir", type=run_dir_argument, help="the run directory (or run_dir=<dir>)")
    p = sub.add_parser("sweep", help="run every combination of swept settings (a=1,2), one run dir each")
    p.add_argument("overrides", nargs="*", help="overrides with sweeps, plus sweep_dir=<dir>")
    p = sub.add_parser("report", help="write report.md and PNG plots for a run or sweeps (--html: a page to "
                                      "read what the judge chose)")
    p.add_argument("paths", nargs="+", type=run_dir_argument,
                   help="a run directory, or sweep directories compared together (or run_dir=<dir>)")
    p.add_argument("--out", help="where to write (default: the directory given; needed for several)")
    p.add_argument("--html", action="store_true", help="also write report.html for one run (no server, no network)")
    p.add_argument("--max-prompts", type=int, default=50,
                   help="--html: prompts shown per round, a seeded sample of larger rounds (default 50)")
    p = sub.add_parser("export", help="answer a benchmark question file in AlpacaEval or MT-Bench format")
    p.add_argument("run_dir", type=run_dir_argument, help="the run directory (or run_dir=<dir>)")
    p.add_argument("--round", type=int, required=True, help="0 = M1, t = the model round t trained")
    p.add_argument("--questions", required=True)
    p.add_argument("--format", required=True, choices=("alpaca_eval", "mt_bench"))
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE] = "1"  # read by this process and every stage it starts
    try:
        if args.command == "export":
            from selfreward.export import export

            print(export(args.run_dir, args.round, args.questions, args.format, args.out, args.max_new_tokens))
            return 0
        if args.command == "sweep":
            from selfreward.sweep import sweep

            return sweep(args.overrides)
        if args.command == "report":
            from selfreward.report import report

            print(report(args.paths, args.out, args.html, args.max_prompts))
            return 0
        if args.command == "status":
            return status(args.run_dir)
        cfg, directives = parse_command(args.overrides)
        if args.command == "config":
            print(to_yaml(cfg), end="")
            return 0
        from selfreward.loop import run
        from selfreward.process import StageFailed

        try:
            run(cfg, **directives)
        except StageFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 2 if e.returncode == 2 else 1
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run_dir_argument(value: str) -> str:
    """A run directory given as a path, or as `run_dir=<path>` like the run's own overrides."""
    return value.removeprefix("run_dir=")


def status(run_dir: str) -> int:
    from rich.console import Console

    from selfreward.rundir import RunDir
    from selfreward.status import status_table

    Console(width=160).print(status_table(load_frozen(run_dir), RunDir(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
