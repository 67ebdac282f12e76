"""What the tests share besides fixtures: the shrunken tiny recipe and the real CLI in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

# Shrinks the tiny recipe further so integration tests spend seconds, not minutes, per stage.
SMALL = [
    "model.tiny.vocab_size=512",
    "model.tiny.hidden_size=64",
    "model.tiny.intermediate_size=128",
    "model.tiny.num_hidden_layers=2",
    "init.epochs=4",
    "prompts.num_prompts=6",
    "generation.num_candidates=3",
    "generation.max_new_tokens=24",
    "judge.samples=2",
    "judge.max_new_tokens=64",
    "eval.max_new_tokens=24",
    "update.epochs=1",
    "train.per_device_batch_size=4",
]


def need(found, what: str):
    """A tool the CI installs: missing, the test fails under CI=true (a skip there would hide a broken
    install step) and is skipped elsewhere, saying what to install. Returns `found`."""
    import pytest

    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} is missing, and CI=true: .ci/run installs it, so this is a broken install step")
        pytest.skip(f"{what} is not installed here")
    return found


def selfreward(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would (`env`: extra environment variables)."""
    result = subprocess.run([sys.executable, "-m", "selfreward", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"selfreward {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def wandb_history(path: Path) -> list[dict]:
    """The logged rows of an offline W&B run file (`run-<id>.wandb`). W&B 0.2x+ writes no
    wandb-summary.json offline; the file is a LevelDB-style log (a 7-byte header, then 32 KiB blocks of
    chunks framed as crc32, length, type) of protobuf Records."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    block, data, rows, pending, pos = 32768, path.read_bytes(), [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


# -- the pinned run-directory files (#28's invariant) -----------------------------------------------

PINNED = Path(__file__).with_name("pinned_outputs.json")
PINNED_FILES = ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "pairs.jsonl")


def platform() -> dict:
    """What the pinned bytes depend on besides the code: the kernels (torch, its CPU capability) and the
    libraries that generate and train."""
    from importlib.metadata import version

    import torch

    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
            **{lib: version(lib) for lib in ("transformers", "trl", "deepspeed", "accelerate")}}


def digests(run_dir: Path, rounds: int) -> dict:
    import hashlib

    files = [run_dir / f"round_{t}" / name for t in range(1, rounds + 1) for name in PINNED_FILES]
    assert any(f.is_file() for f in files), f"{run_dir} has no stage files to compare"
    return {str(f.relative_to(run_dir)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def assert_pinned(name: str, run_dir: Path, rounds: int) -> None:
    """The run's stage files are byte for byte the ones pinned in tests/pinned_outputs.json: a change
    that moves the stages' code about (the stage refactor) must leave them alone. Bytes are pinned per
    platform (kernels differ between CPUs: AVX512 and AVX2 machines write other floats); on a platform
    with no pin the test skips, saying which ones have one. `SELFREWARD_PIN=write pytest ...` writes
    this platform's entry, for a change that means to alter the outputs (and says why in its commit),
    or for a new platform, from the code the pins were first written by."""
    import pytest

    pins = json.loads(PINNED.read_text()) if PINNED.is_file() else []  # [{"platform", "runs": {name: digests}}]
    here, got = platform(), digests(run_dir, rounds)
    entry = next((e for e in pins if e["platform"] == here), None)
    if os.environ.get("SELFREWARD_PIN") == "write":
        if entry is None:
            pins.append(entry := {"platform": here, "runs": {}})
        entry["runs"][name] = got
        PINNED.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        return
    if entry is None or name not in entry["runs"]:
        pytest.skip(f"{name!r} is pinned on {[e['platform'] for e in pins if name in e['runs']]}, this is {here}")
    pinned = entry["runs"][name]
    changed = sorted(f for f in {*pinned, *got} if got.get(f) != pinned.get(f))
    assert not changed, f"{name}: {changed} differ from the pinned bytes ({PINNED.name}; see assert_pinned)"
