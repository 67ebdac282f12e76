"""Subprocess plumbing shared by the orchestrator and the processes it starts."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies.

    torchrun starts every rank in its own session, so killing the run's process group (kill -9,
    a scheduler pre-empting the job) would otherwise leave ranks training on as orphans, racing the
    rerun that resumes the same stage.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class StageFailed(RuntimeError):
    def __init__(self, what: str, returncode: int):
        super().__init__(
            f"{what} failed with exit code {returncode} (its output is above). "
            "Rerun the same command to resume from the last finished stage."
        )
        self.returncode = returncode


def run_stage(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode:
        raise StageFailed(what, result.returncode)
