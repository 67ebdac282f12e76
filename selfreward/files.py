"""Files that are whole or absent: atomic writes (a temporary name, then a rename), JSONL and JSON,
and the fingerprints a stage's manifest keeps of what it wrote and read (`selfreward.rundir`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from selfreward.errors import ConfigError


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    remove_dead_temps(path)


def remove_dead_temps(path: Path) -> None:
    """Remove `.<name>.tmp<pid>` files beside `path` whose writer is gone: a kill between
    atomic_write_text's write and its rename leaves one. A live writer's file is left alone."""
    for stale in path.parent.glob(f".{path.name}.tmp*"):
        pid = stale.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (whatever it runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a line that is not JSON is a ConfigError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg}); the file is damaged") from None
    return rows


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory (named for this process) that replaces `path` only if the block finishes."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


# Outputs above this size are recorded by size only: hashing many GB of weights would cost more than
# it tells (a deleted or truncated file still shows).
HASH_LIMIT = 64 << 20


def fingerprint(path: Path) -> dict:
    """What `verify` compares: a file's size, SHA-256 (below HASH_LIMIT) and JSONL record count, or the
    sizes of a directory's files (a training stage's `train/` checkpoints left out)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and "train" not in p.relative_to(path).parts)
        return {"files": {str(p.relative_to(path)): fingerprint(p) for p in files}}
    size = path.stat().st_size
    out = {"bytes": size, **({"sha256": file_sha256(path)} if size <= HASH_LIMIT else {})}
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            out["records"] = sum(1 for line in f if line.strip())
    return out


def differences(recorded: dict, now: dict, where: str) -> list[str]:
    """How a file or folder's fingerprint now differs from the one recorded (`where` names it)."""
    if "files" in recorded:
        found = now.get("files", {})
        missing = [f"{where}/{name}: missing" for name in recorded["files"] if name not in found]
        return missing + [d for name, r in recorded["files"].items() if name in found
                          for d in differences(r, found[name], f"{where}/{name}")]
    if "records" in recorded and recorded["records"] != now.get("records"):
        return [f"{where}: {now.get('records')} records, {recorded['records']} when written"]
    if recorded.get("bytes") != now.get("bytes") or recorded.get("sha256") != now.get("sha256"):
        return [f"{where}: its content changed after it was written ({now.get('bytes')} bytes, "
                f"{recorded.get('bytes')} when written)"]
    return []


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest TRL checkpoint whose save finished (trainer_state.json is written after the weights
    and optimizer state), so a kill during a checkpoint write falls back to the one before."""
    done = [p for p in out_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None
