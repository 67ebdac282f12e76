"""`selfreward sweep` (DPO vs SFT over two seeds), killed and rerun, then `selfreward report`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import SMALL, selfreward

pytestmark = pytest.mark.slow


def test_sweep_killed_rerun_and_report(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Plain-process training and one round keep 4 runs short; the ZeRO launches are tested elsewhere.
    args = [
        "sweep",
        "recipe=tiny",
        *SMALL,
        "init.epochs=1",
        "judge=logprob",
        "pairs.sft_threshold=0",
        "launch.accelerate_config=null",
        "update=dpo,sft",
        "seed=0,1",
        "rounds=1",
        f"sweep_dir={sweep_dir}",
    ]
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "selfreward", *args], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (sweep_dir / "sweep.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the first combination finished; the second is under way
    proc.wait()
    first = sweep_dir / "update=dpo,seed=0"
    first_manifest = (first / "round_1" / "manifest.json").read_text()

    result = selfreward(*args)
    assert "done (skipped)" in result.stderr
    info = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["name"] for r in info["runs"]] == [
        "update=dpo,seed=0",
        "update=dpo,seed=1",
        "update=sft,seed=0",
        "update=sft,seed=1",
    ]
    assert [r["status"] for r in info["runs"]] == ["done (skipped)", "done", "done", "done"]
    assert (first / "round_1" / "manifest.json").read_text() == first_manifest  # untouched
    assert (sweep_dir / "update=sft,seed=1" / "round_1" / "sft.jsonl").is_file()

    report = selfreward("report", str(sweep_dir)).stdout.strip()
    text = (sweep_dir / "report.md").read_text()
    assert report.endswith("report.md") and (sweep_dir / "sweep.png").stat().st_size > 10_000
    assert "| update=dpo | 2 |" in text and "| update=sft | 2 |" in text and " ± " in text

    selfreward("report", str(first))
    assert (first / "rounds.png").is_file() and (first / "scores.png").is_file()
    assert "| 1 |" in (first / "report.md").read_text()


def test_sweep_rejects_a_bad_combination_before_running(tmp_path):
    result = selfreward("sweep", "update=dpo,ppo", f"sweep_dir={tmp_path / 's'}", check=False)
    assert result.returncode == 2 and "Valid choices: dpo, sft" in result.stderr
    assert not (tmp_path / "s").exists()
