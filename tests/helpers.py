"""What the tests share besides fixtures: the shrunken tiny recipe and the real CLI in a subprocess."""

import os
import subprocess
import sys

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
