"""What the DPO and SFT entry points share: arguments, model loading, saving, the manifest entry."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from selfreward.checkpoint import load_causal_lm, merge_adapter, set_adapter_base, trains_adapter
from selfreward.config import load_frozen
from selfreward.process import stage_main
from selfreward.profiling import timed
from selfreward.rundir import RunDir, last_checkpoint
from selfreward.schema import Config


def training_main(argv: list[str] | None, description: str, train: Callable[[Config, RunDir, int, str], None]) -> int:
    """A training stage's entry point: `train(cfg, rd, t, stage)`. Round 0 is the init stage;
    `--stage lookahead` is the temporal variant's look-ahead model (DPO only)."""
    def run(args) -> None:
        stage = "init" if args.round == 0 else args.stage
        train(load_frozen(args.run_dir), RunDir(args.run_dir), args.round, stage)

    return stage_main(argv, description, run,
                      lambda p: p.add_argument("--stage", choices=("update", "lookahead"), default="update"))


def trainer_kwargs(cfg: Config, out_dir: Path, epochs: float, learning_rate: float, seed: int,
                   max_steps: int = -1) -> dict:
    """TrainingArguments shared by SFTConfig and DPOConfig. DeepSpeed comes from the accelerate
    config of the launch, never from here (passing `deepspeed=` too would configure it twice)."""
    import dataclasses

    import torch
    from transformers import TrainingArguments

    t = cfg.train
    # TRL's configs turn checkpointing on by default, under a name transformers 5 deprecates: set it
    # by the name this transformers has, to what the recipe says.
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return dict(
        # Without CUDA, say so: under a DeepSpeed launch transformers otherwise sets up a
        # 1-process state and DeepSpeed's batch-size check fails.
        use_cpu=not torch.cuda.is_available(),
        output_dir=str(out_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_length=t.max_length,
        bf16=t.bf16,
        **{checkpointing: t.gradient_checkpointing},
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        report_to="none",
        seed=seed,
        data_seed=seed,
    )


def train_dtype(cfg: Config):
    import torch

    return torch.bfloat16 if cfg.train.bf16 else torch.float32


def load_model(path: str, cfg: Config):
    """Call only after the TRL config exists: under ZeRO-3 that config is what makes
    `from_pretrained` partition the weights as they load."""
    return load_causal_lm(path, train_dtype(cfg), cfg.model.trust_remote_code)


def train_and_save(trainer, tokenizer, cfg: Config, rd: RunDir, t: int, stage: str, records: int, inputs: list,
                   start_from: str) -> None:
    """Train (resuming from the last checkpoint if one exists), save the model atomically, and record
    the stage in the manifest. Every rank calls this: under ZeRO-3 saving gathers shards from all.
    With LoRA the trainer saves the adapter; it is then merged onto `start_from` (`lora.merge=true`)
    or kept with `start_from` recorded as its base."""
    start = time.perf_counter()
    resume = last_checkpoint(Path(trainer.args.output_dir))
    with timed("train"):
        result = trainer.train(resume_from_checkpoint=resume)
    final = rd.trained_model(t, stage)
    tmp = final.with_name(".model.tmp")
    accel = trainer.accelerator
    if accel.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accel.wait_for_everyone()
    trainer.save_model(str(tmp))
    if accel.is_main_process:
        if trains_adapter(cfg.lora, stage):
            set_adapter_base(tmp, start_from)
            if cfg.lora.merge:
                _merge_in_place(tmp, cfg)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        logs = [h for h in trainer.state.log_history if "loss" in h]
        rd.mark_done(
            t,
            stage,
            inputs,
            resumed_from=resume,
            seconds=round(time.perf_counter() - start, 3),
            records=records,
            train_loss=result.training_loss,
            steps=trainer.state.global_step,
            world_size=trainer.args.world_size,
            deepspeed_zero_stage=_zero_stage(trainer),
            last_log=logs[-1] if logs else {},
            log_history=trainer.state.log_history,
            trainer_args=_json_safe(trainer.args.to_dict()),  # what TRL actually trained with
        )
    accel.wait_for_everyone()


def _merge_in_place(adapter_dir: Path, cfg: Config) -> None:
    """Replace the adapter in `adapter_dir` by base + adapter merged. Loads on this process alone, so
    ZeRO-3's partition-on-load must be off for it (the training engine is done with the weights)."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    merged = adapter_dir.with_name(adapter_dir.name + ".merged")
    shutil.rmtree(merged, ignore_errors=True)
    merge_adapter(adapter_dir, merged, train_dtype(cfg), cfg.model.trust_remote_code)
    shutil.rmtree(adapter_dir)
    os.replace(merged, adapter_dir)


def _json_safe(args: dict) -> dict:
    return {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool, type(None), list))}


def _zero_stage(trainer) -> int | None:
    plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    return plugin.zero_stage if plugin else None
