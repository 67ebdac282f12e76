"""The benchmark entry point at its minimal size: every row is produced in the documented shape."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_benchmark_entry_point_minimal(tmp_path):
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "benchmarks", "--size", "minimal", "--out", str(out)], check=True,
                   capture_output=True)
    result = json.loads(out.read_text())
    assert "CPU cores" in result["machine"] and result["size"] == "minimal"
    rows = result["rows"]
    assert len(rows) == 6
    for r in rows:
        assert set(r) == {"name", "ratio", "target", "higher_is_better", "detail"}
        assert isinstance(r["ratio"], float) and r["ratio"] > 0 and r["detail"]
    targets = {r["name"].split(" (")[0]: r["target"] for r in rows}
    assert targets["batched generation vs per-prompt loop"] == 10.0
    assert targets["update stage vs bare TRL DPOTrainer script"] == 1.1
