"""What a training stage keeps besides its model (a TRL/transformers TrainerCallback):

- every logged step in `<train dir>/log.jsonl` (the console shows none of them; trackers get them too);
- the SHA-256 of every file of every checkpoint it saved, in `<train dir>/checkpoint_hashes.json`
  (`train.verify_checkpoints`). A resume loads a checkpoint with `torch.load(weights_only=False)`,
  which runs code a planted or damaged file holds: `trusted_checkpoint` resumes only from a checkpoint
  whose files are the ones this run wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from selfreward.errors import ConfigError
from selfreward.files import file_sha256, write_json

HASHES = "checkpoint_hashes.json"


def checkpoint_files(checkpoint: Path) -> dict[str, str]:
    return {str(p.relative_to(checkpoint)): file_sha256(p) for p in sorted(checkpoint.rglob("*")) if p.is_file()}


class RunCallback(TrainerCallback):
    def __init__(self, out_dir: Path, verify_checkpoints: bool, final_checkpoint: bool = True):
        self.out_dir, self.verify, self.final_checkpoint = Path(out_dir), verify_checkpoints, final_checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        # transformers checkpoints the last step; when the checkpoints go once the model is saved, that
        # one would be written (and hashed: about 16 bytes a parameter) only to be deleted. A kill before
        # the model is saved resumes from the last periodic checkpoint, or starts over, to the same model.
        if not self.final_checkpoint and state.global_step >= state.max_steps:
            control.should_save = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    def on_save(self, args, state, control, **kwargs):
        if not self.verify:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its shards and RNG state
        if state.is_world_process_zero:
            checkpoint = self.out_dir / f"checkpoint-{state.global_step}"
            recorded = _read(self.out_dir)
            recorded[checkpoint.name] = checkpoint_files(checkpoint)
            write_json(self.out_dir / HASHES, {k: v for k, v in recorded.items() if (self.out_dir / k).is_dir()})


def _read(out_dir: Path) -> dict:
    path = out_dir / HASHES
    return json.loads(path.read_text()) if path.is_file() else {}


def trusted_checkpoint(out_dir: Path, verify: bool, restart_hint: str) -> str | None:
    """The newest complete checkpoint to resume from. With `verify`, only one whose files hash to what
    this run recorded when it saved them (a newer unrecorded one, from a kill before its hashes were
    written, is passed over); one that differs stops the run with the restart_from that redoes it."""
    done = sorted((p for p in out_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]), reverse=True)
    if not verify:
        return str(done[0]) if done else None
    recorded = _read(out_dir)
    for checkpoint in done:
        if checkpoint.name not in recorded:
            continue
        if checkpoint_files(checkpoint) != recorded[checkpoint.name]:
            raise ConfigError(f"{checkpoint}: its files are not the ones this run saved (added, removed or "
                              "changed since), and resuming would load them with torch.load. Delete the "
                              f"checkpoint to resume from an earlier one, or rerun with restart_from={restart_hint}.")
        return str(checkpoint)
    return None
