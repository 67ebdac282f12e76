"""One writer per run directory.

`selfreward run` holds `<run_dir>/.selfreward.lock` for the whole run. The file is created with
O_EXCL (atomic on local disks and on NFSv3+), names its holder (host, pid, start time, command) and
is touched every HEARTBEAT seconds while the run lives. A second run on the same directory exits 2
naming the holder. A lock is taken over only when its holder is provably gone: on the same host its
pid is not a live selfreward process; from another host (a cluster's shared filesystem) its heartbeat
is older than STALE_AFTER seconds, which a live holder never lets happen.

Commands that only read (`status`, `report`, `export`) take no lock, and a read-only directory needs
none: nothing can write it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from selfreward.errors import ConfigError
from selfreward.files import pid_alive
from selfreward.rundir import LOCK_NAME

NAME = LOCK_NAME
HEARTBEAT = 30.0
STALE_AFTER = 600.0


def _alive(pid: int) -> bool:
    """A live process that is a selfreward run (a pid reused by another program does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # no /proc to read the command from: a live pid counts
    return b"selfreward" in cmdline


class RunLock:
    def __init__(self, root: Path):
        self.path = Path(root) / NAME
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # being written this instant, or gone: treat as held, fresh
            return {}

    def why_stale(self, holder: dict) -> str | None:
        """Why the current lock's holder is provably gone, or None."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        if not holder:
            return None if age < STALE_AFTER else f"an unreadable lock untouched for {age:.0f} s"
        if holder.get("host") == socket.gethostname():
            return None if _alive(holder["pid"]) else f"pid {holder['pid']} on this host is gone"
        return None if age < STALE_AFTER else f"no heartbeat from {holder.get('host')} for {age:.0f} s"

    def acquire(self) -> str | None:
        """Take the lock; return a note when a stale lock was taken over. Raises ConfigError when
        another live run holds it."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": " ".join(sys.argv)}
        note = None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                stale = self.why_stale(holder)
                if stale is None:
                    beat = time.time() - self.path.stat().st_mtime
                    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
                    raise ConfigError(
                        f"{self.path.parent} is in use by another selfreward run: {who}, started "
                        f"{holder.get('started', '?')} ({holder.get('command', '')!r}; last heartbeat {beat:.0f} s "
                        "ago). Wait for it, stop it, or use another run_dir."
                    ) from None
                note = f"took over a stale lock of pid {holder.get('pid', '?')} ({stale})"
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return note
        raise ConfigError(f"{self.path}: could not take the run directory's lock (another run keeps taking it).")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self.holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()
