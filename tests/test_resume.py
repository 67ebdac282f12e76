"""Kill -9 a run at several points, rerun the same command, and compare with an uninterrupted run."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import SMALL, assert_pinned, selfreward

pytestmark = pytest.mark.slow

# Small chunks and a checkpoint every step, so every kill point lies inside a stage.
ARGS = [
    "recipe=tiny",
    *SMALL,
    "rounds=2",
    "judge=logprob",
    "generation.batch_size=2",
    "update.epochs=2",
    "train.save_steps=1",
    "launch.accelerate_config=cpu_zero2",
]
KEYS = {
    "prompts.jsonl": ("id",),
    "candidates.jsonl": ("prompt_id", "candidate_id"),
    "judgments.jsonl": ("prompt_id", "candidate_id"),
    "pairs.jsonl": ("prompt_id",),
}


def checkpoint_hashes(train_dir) -> dict:
    try:
        return json.loads((train_dir / "checkpoint_hashes.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-replace
        return {}


def run_until(run_dir, condition, log, timeout=600) -> None:
    """Start the run, SIGKILL its whole process group (orchestrator, workers, ranks) when
    `condition()` holds, and fail if the run ended before that."""
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfreward", "run", *ARGS, f"run_dir={run_dir}"],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill point; see {log}")


def ids(path, key):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [tuple(r[k] for k in key) for r in rows]


def manifest(run_dir, t):
    path = run_dir / f"round_{t}" / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_kill_anywhere_then_rerun_matches_clean_run(run_from_init, tmp_path):
    clean = run_from_init("clean")
    selfreward("run", *ARGS, f"run_dir={clean}")
    assert_pinned("tiny, ZeRO-2, 2 rounds", clean, rounds=2)

    run_dir, log = run_from_init("killed"), tmp_path / "killed.log"
    r1 = run_dir / "round_1"
    kill_points = {
        "candidate sampling": lambda: (r1 / "candidates.jsonl.progress.json").is_file(),
        "judging": lambda: (r1 / "judgments.jsonl.progress.json").is_file(),
        # a checkpoint is resumable once its hashes are recorded (a newer unrecorded one is passed over)
        "training": lambda: "checkpoint-1" in checkpoint_hashes(r1 / "train"),
        "between rounds": lambda: (r1 / "metrics.json").is_file(),
    }
    for point, condition in kill_points.items():
        run_until(run_dir, condition, log)
        # the kill landed inside the stage it names: the stage is not finished
        finished = manifest(run_dir, 1)
        stage = {"candidate sampling": "candidates", "judging": "judge", "training": "update"}.get(point)
        if stage:
            assert stage not in finished, f"killed too late for '{point}'"
    selfreward("run", *ARGS, f"run_dir={run_dir}")

    # the training after the kill went on from a checkpoint the killed one had recorded
    assert re.search(r"/checkpoint-\d+$", manifest(run_dir, 1)["update"]["resumed_from"] or "")
    for t in (1, 2):
        for name, key in KEYS.items():
            got, want = ids(run_dir / f"round_{t}" / name, key), ids(clean / f"round_{t}" / name, key)
            assert len(got) == len(set(got)), f"duplicates in round_{t}/{name}"
            assert got == want, f"round_{t}/{name} differs from the clean run"
        assert (run_dir / f"round_{t}" / "model" / "model.safetensors").is_file()
    # generation of round 1 is reproduced exactly, texts included
    for name in ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl"):
        assert (run_dir / "round_1" / name).read_text() == (clean / "round_1" / name).read_text()
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith((".partial", ".progress.json")) or ".tmp" in p.name]
    assert leftovers == []

    status = selfreward("status", f"run_dir={run_dir}").stdout
    assert status.count("done") >= 10 and "not started" not in status and "partial" not in status


def test_status_shows_partial_stage(run_from_init, tmp_path):
    run_dir = run_from_init()
    r1 = run_dir / "round_1"
    run_until(run_dir, lambda: (r1 / "judgments.jsonl.progress.json").is_file(), tmp_path / "log")
    out = selfreward("status", f"run_dir={run_dir}").stdout
    row = next(line for line in out.splitlines() if line.startswith("│ 1 "))
    assert row.count("done (") == 2  # prompts, candidates
    assert re.search(r"partial \(\d+ of \d+ records\)", row)  # judge: some chunks committed
    assert row.count("not started") == 3  # pairs, update, evaluate


def test_a_kill_during_the_first_deepspeed_build_does_not_hang_the_next_run(tmp_path):
    """The first DeepSpeed launch on a machine compiles an op under a lock; a kill then leaves the lock,
    which made every later launch wait forever. The rerun removes it (saying so) and finishes."""
    extensions = tmp_path / "torch_extensions"  # a machine that has never built the op
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)}
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "selfreward", "run", "recipe=tiny", *SMALL, "rounds=0", "init.epochs=1",
            f"run_dir={run_dir}"]
    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(extensions.glob("*/lock")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(extensions.glob("*/lock")), f"the build never started; see {tmp_path / 'first.log'}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(extensions.glob("*/lock"))  # left behind
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "removed a stale build lock" in result.stderr
    assert (run_dir / "init" / "model" / "model.safetensors").is_file()
