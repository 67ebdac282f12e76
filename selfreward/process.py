"""Subprocess plumbing shared by the orchestrator and the processes it starts."""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import os
import signal
import subprocess
import sys
import traceback
from typing import Callable

from selfreward.errors import ConfigError

PR_SET_PDEATHSIG = 1
_in_process = False  # a stage running inside the orchestrator (launch.in_process=true)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies.

    torchrun starts every rank in its own session, so killing the run's process group (kill -9,
    a scheduler pre-empting the job) would otherwise leave ranks training on as orphans, racing the
    rerun that resumes the same stage.
    """
    if _in_process or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def stage_main(argv: list[str] | None, description: str, run: Callable[[argparse.Namespace], object],
               add_arguments: Callable[[argparse.ArgumentParser], object] = lambda parser: None) -> int:
    """The entry point every stage process shares: `--run-dir R --round t` (plus the stage's own
    arguments), death with the parent, and exit code 2 with one line for a ConfigError."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--round", type=int, required=True, help="t >= 1: round t; 0: the init stage (M1)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    die_with_parent()
    try:
        return run(args) or 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class StageFailed(RuntimeError):
    def __init__(self, what: str, returncode: int):
        super().__init__(
            f"{what} failed with exit code {returncode} (its output is above). "
            "Rerun the same command to resume from the last finished stage."
        )
        self.returncode = returncode


def run_stage(cmd: list[str], what: str, in_process: bool = False) -> None:
    """Run `cmd` and wait for it. With `in_process`, `cmd` must be `python -m selfreward.<stage> args...`
    (config validation allows `launch.in_process` only when every stage is one such process): then
    `<module>.main(args)` runs in this process, so torch, transformers and TRL are imported once per
    run instead of once per stage."""
    if in_process:
        # torchrun is `python -m` too, but its ranks cannot run here
        if cmd[:2] != [sys.executable, "-m"] or not cmd[2].startswith("selfreward."):
            raise ValueError(f"launch.in_process runs only plain `python -m` stages, not {cmd}")
        returncode = _run_main(cmd[2], cmd[3:])
    else:
        returncode = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if returncode:
        raise StageFailed(what, returncode)


def _run_main(module: str, args: list[str]) -> int:
    global _in_process
    _in_process = True
    try:
        return importlib.import_module(module).main(args) or 0
    except SystemExit as e:  # argparse and sys.exit inside the stage
        return e.code if isinstance(e.code, int) else 1
    except Exception:  # what a stage process would print before exiting 1
        traceback.print_exc()
        return 1
    finally:
        _in_process = False
        # The stage's models are unreachable now; give their memory back before the next stage loads.
        # Freezing what survives (modules, caches) keeps later collections from rescanning it.
        gc.collect()
        gc.freeze()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
