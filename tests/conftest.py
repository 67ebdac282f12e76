import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def selfreward(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would (`env`: extra environment variables)."""
    result = subprocess.run([sys.executable, "-m", "selfreward", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"selfreward {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def initialized_run(tmp_path_factory) -> Path:
    """A run directory holding the small tiny model and its init SFT (M1), built once per session
    in a single plain process; tests copy it so each starts its rounds from the same M1."""
    run_dir = tmp_path_factory.mktemp("shared") / "run"
    selfreward("run", "recipe=tiny", *SMALL, "rounds=0", "launch.accelerate_config=null", f"run_dir={run_dir}")
    return run_dir


@pytest.fixture
def run_from_init(initialized_run, tmp_path):
    """Return a fresh run dir that already holds the shared base model and M1."""

    def make(name: str = "run") -> Path:
        run_dir = tmp_path / name
        run_dir.mkdir()
        for part in ("base_model", "init"):
            shutil.copytree(initialized_run / part, run_dir / part)
        return run_dir

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(initialized_run) -> Path:
    """M1 of the shared run: a saved tokenizer + model loaded through from_pretrained."""
    return initialized_run / "init" / "model"
