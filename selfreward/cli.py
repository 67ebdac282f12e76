"""`selfreward` command line. Settings are Hydra overrides on a recipe from recipes/:

    selfreward run recipe=tiny update=sft rounds=2 generation.num_candidates=4 run_dir=/tmp/r
    selfreward config recipe=tiny judge=logprob      # print the resolved config and exit

Exit codes: 0 done, 2 bad configuration or input (one message naming the key), 1 a stage failed.
"""

from __future__ import annotations

import argparse
import sys

from selfreward.config import ConfigError, compose, to_yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="selfreward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the self-rewarding loop"), ("config", "print the resolved config")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. recipe=tiny update=sft rounds=3")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.overrides)
        if args.command == "config":
            print(to_yaml(cfg), end="")
            return 0
        from selfreward.loop import StageFailed, run

        try:
            run(cfg)
        except StageFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 2 if e.returncode == 2 else 1
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
