"""DeepSpeed's compiled ops, which torch's extension builder builds once per machine into
`$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions/`). On a CPU machine the first DeepSpeed
launch compiles its communication op for about a minute and prints nothing meanwhile.

A build holds `<root>/<op>/lock` while it runs; a build killed midway leaves the lock behind, and every
later build on the machine then waits for it forever, silently. Before a DeepSpeed launch, `prepare`
removes such a lock when it is provably stale: older than MIN_AGE seconds while no compiler or ninja
process runs on the machine (a live build always has one). While compilers run (a build in progress,
or one orphaned by a kill that finishes on its own), it waits for them, saying so.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

BUILDERS = {"ninja", "cc1plus", "c++", "g++", "gcc", "cc", "ld", "collect2"}
MIN_AGE = 30.0  # a build takes its lock a moment before it starts its first compiler
WAIT = 600.0  # the longest a build in progress is waited for


def root() -> Path:
    """The folder holding one build directory per op, as torch's builder names it: $TORCH_EXTENSIONS_DIR
    itself, or a per-interpreter folder such as `py311_cpu` under the default."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    import torch

    device = "cpu" if torch.version.cuda is None else f"cu{torch.version.cuda.replace('.', '')}"
    interpreter = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path.home() / ".cache" / "torch_extensions" / f"{interpreter}_{device}"


def _building() -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in BUILDERS:
                return True
        except OSError:
            continue
    return False


def _locks() -> list[Path]:
    return list(root().glob("*/lock"))


def stale_locks(min_age: float = MIN_AGE) -> list[Path]:
    locks = [p for p in _locks() if p.exists() and time.time() - p.stat().st_mtime > min_age]
    return locks if locks and not _building() else []


def prepare(say: Callable[[str], None], poll: float = 2.0) -> None:
    """Remove stale build locks, saying so, and say when DeepSpeed's CPU op is about to be built."""
    deadline = time.time() + WAIT
    if _locks() and _building():
        say("waiting for a torch-extensions build in progress on this machine")
    while _locks() and time.time() < deadline and (_building() or not stale_locks()):
        time.sleep(poll)
    for lock in stale_locks():
        lock.unlink(missing_ok=True)
        say(f"removed a stale build lock, {lock}: a build was killed there and no build is running now")
    import torch

    if not torch.cuda.is_available() and not list(root().glob("deepspeed_shm_comm/*.so")):
        say(f"building DeepSpeed's CPU communication op once for this machine (about a minute; cached in {root()})")
