"""`selfreward sweep`: the README's line (DPO vs SFT over two seeds), killed and rerun, then `selfreward report`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import selfreward

pytestmark = pytest.mark.slow


def readme_sweep() -> list[str]:
    """The README's sweep line, as shown (its `selfreward sweep ...` before any `&&`)."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    line = re.search(r"^selfreward (sweep [^\n]*?)(?:\s+&&.*)?$", readme, re.M).group(1)
    return shlex.split(line)


def test_the_readmes_sweep_killed_rerun_and_report(tmp_path):
    """The README's sweep line as shown (the tiny recipe, ZeRO-2 launches, its seeds), shrunk only to
    one round and given a scratch sweep_dir; killed after its first run, rerun, reported."""
    sweep_dir = tmp_path / "sweep"
    shown = readme_sweep()
    assert shown[:2] == ["sweep", "update=dpo,sft"] and "seed=0,1" in shown and "rounds=2" in shown
    args = [a for a in shown if not a.startswith(("rounds=", "sweep_dir="))] + ["rounds=1", f"sweep_dir={sweep_dir}"]
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
