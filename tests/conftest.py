import shutil
from pathlib import Path

import pytest

from tests.helpers import SMALL, selfreward


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
