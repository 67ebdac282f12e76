"""Opt-in timing for `python -m benchmarks`: with SELFREWARD_PROFILE=<file> set, every model load /
generate / scoring forward / training call, and every round of the orchestrator, appends
{"kind", "seconds", "pid"} to that file when it ends, from whichever process (orchestrator,
generation worker, trainer rank) makes it."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager

ENV = "SELFREWARD_PROFILE"


@contextmanager
def timed(kind: str):
    path = os.environ.get(ENV)
    if not path:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        line = json.dumps({"kind": kind, "seconds": time.perf_counter() - start, "pid": os.getpid()})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def read(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
