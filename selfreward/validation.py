"""What the types alone cannot say about a config: bounds (the schema's intervals, `schema.bounded`),
choices that depend on other keys, combinations that cannot work, and files that must exist. Every
composed or frozen config passes through `validate` (`selfreward.config`)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from selfreward import testbed_constraints
from selfreward.choices import (
    CONSTRAINT_TYPES,
    HELDOUT_VERSIONS,
    INIT_DATA,
    TESTBED_TASKS,
    Backend,
    JudgeMethod,
    OnProblem,
    Precision,
    TestbedFamily,
    UpdateMethod,
)
from selfreward.errors import ConfigError
from selfreward.resources import find_launch_config, find_prompt
from selfreward.schema import Config
from selfreward.variants import settings as variant_settings

DATA_FIELDS = ("instruction", "response", "judgment", "score", "prompt", "id")


def readable(e: Exception) -> str:
    """One line naming the key, from an OmegaConf or Hydra error."""
    cause = e.__cause__ or e
    key = getattr(cause, "full_key", None)
    msg = str(cause).split("\n")[0]
    return f"Bad value for '{key}': {msg}" if key else msg


def validate(cfg, frozen: bool = False) -> Config:
    """Turn a DictConfig into a Config and check what the types alone cannot. `frozen`: a config.yaml
    a run wrote (settings since moved are dropped, `selfreward.variants.settings`)."""
    variant = OmegaConf.to_container(cfg.variant) if "variant" in cfg else {}
    try:
        rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "variant"])
        merged = OmegaConf.merge(OmegaConf.structured(Config), rest)
        obj: Config = OmegaConf.to_object(merged)
        obj.variant = variant_settings(variant, frozen)
    except ConfigError:
        raise
    except Exception as e:  # OmegaConf reports type and missing-value errors with the full key
        raise ConfigError(readable(e)) from None
    _check_bounds(obj)
    if obj.update.method is UpdateMethod.dpo and obj.generation.num_candidates < 2:
        raise ConfigError("'generation.num_candidates' must be at least 2 for update=dpo (pairs need two).")
    if obj.judge.on_collapse is OnProblem.skip:
        raise ConfigError("'judge.on_collapse' must be one of [warn, stop], got skip.")
    if obj.pairs.on_too_few is OnProblem.warn:
        raise ConfigError("'pairs.on_too_few' must be one of [stop, skip], got warn.")
    if obj.init.data not in INIT_DATA:
        raise ConfigError(f"Unknown choice '{obj.init.data}' for 'init.data'. Valid choices: {', '.join(INIT_DATA)}.")
    if obj.train.precision is Precision.bf16:
        small = [(k, lr) for k, lr in (("init.learning_rate", obj.init.learning_rate),
                                       ("update.learning_rate", obj.update.learning_rate)) if lr < 1e-5]
        if small:
            raise ConfigError(f"train.precision=bf16 keeps no fp32 copy of the weights: with {small[0][0]}="
                              f"{small[0][1]:g} most updates are below bf16's resolution (about 0.4 % of a "
                              "weight) and round away. Use train.precision=bf16_mixed (fp32 master weights, bf16 "
                              "compute, as fast on AMX CPUs and GPUs) or a learning rate of at least 1e-5.")
    for key, value in obj.data.columns.items():
        if key not in DATA_FIELDS or not isinstance(value, str):
            raise ConfigError(f"Unknown choice '{key}' for a 'data.columns' key (our field name, mapped to the "
                              f"file's column name). Valid choices: {', '.join(DATA_FIELDS)}.")
    _validate_variant(obj)
    _validate_judge(obj)
    _validate_testbed(obj)
    _validate_scale(obj)
    for key, value in rendered_templates(obj):
        find_prompt(value, key)
    if obj.model.chat_template:
        find_prompt(obj.model.chat_template, "model.chat_template", suffix=".jinja")
    if obj.launch.accelerate_config is not None:
        find_launch_config(obj.launch.accelerate_config)
    paths = (("data.ift_path", obj.data.ift_path), ("data.eft_path", obj.data.eft_path),
             ("eval.prompts_path", obj.eval.prompts_path), ("eval.eft_path", obj.eval.eft_path))
    for key, value in paths:
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"'{key}': no such file: {value}")
    return obj


def _check_bounds(obj: Config) -> None:
    """Every field the schema gives an interval (`schema.bounded`), then the bounds that depend on
    another key: values a run would otherwise accept and fail on much later."""
    for key, interval, value in _bounded(obj, ""):
        low_open, low, high, high_open = _interval(interval)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise ConfigError(f"'{key}' must be {describe_interval(interval, type(value))}, got {value}.")
    i, p = obj.init, obj.prompts
    if i.max_steps < 0 and i.epochs <= 0:  # -1 = the epochs decide
        raise ConfigError(f"'init.epochs' must be > 0, got {i.epochs}.")
    if i.max_steps == 0 or i.max_steps < -1:
        raise ConfigError(f"'init.max_steps' must be >= 1, or -1 for init.epochs, got {i.max_steps}.")
    if p.min_words > p.max_words:
        raise ConfigError(f"'prompts.min_words' ({p.min_words}) must not exceed 'prompts.max_words' ({p.max_words}).")


def _bounded(node, path: str):
    """(key, interval, value) of every bounded field under a config dataclass instance."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _bounded(value, f"{path}{f.name}.")
        elif "interval" in f.metadata:
            yield f"{path}{f.name}", f.metadata["interval"], value


def _interval(interval: str) -> tuple[bool, float, float, bool]:
    low, high = interval[1:-1].split(",")
    return interval[0] == "(", float(low), float(high), interval[-1] == ")"


def describe_interval(interval: str, kind: type = float) -> str:
    """"[1, inf)" -> "at least 1" for a count, ">= 1" otherwise; "(0, inf)" -> "> 0"; else "in (0, 1]"."""
    low_open, _, high, _ = _interval(interval)
    if high != float("inf"):
        return f"in {interval}"
    bound = interval[1:-1].split(",")[0]
    return f"> {bound}" if low_open else f"at least {bound}" if kind is int else f">= {bound}"


def round_templates(obj: Config) -> list[tuple[str, str]]:
    """(key, value) of the prompt templates of the paper's round."""
    return [("prompts.template", obj.prompts.template), ("judge.template", obj.judge.template),
            ("prompts.evolve_template", obj.prompts.evolve_template), ("eval.template", obj.eval.template)]


def rendered_templates(obj: Config) -> list[tuple[str, str]]:
    """(key, value) of every prompt template the run renders: the round's and its variant's."""
    return [*round_templates(obj), *obj.variant.templates(obj)]


def _validate_judge(obj: Config) -> None:
    j = obj.judge
    if j.method is JudgeMethod.oracle and not obj.testbed.enabled:
        raise ConfigError("judge.method=oracle scores with the testbed's checker: it needs recipe=testbed "
                          "(testbed.enabled=true). It is the ceiling of a testbed sweep, never self-rewarding.")
    if j.reasoning and j.method is JudgeMethod.sampled:  # oracle: the model's own judge is measured with it
        raise ConfigError("'judge.reasoning'=true reads the score after the judge's own reasoning: it needs "
                          "judge=logprob (got judge.method=sampled).")
    if not j.score_names or len(set(j.score_names)) != len(j.score_names):
        raise ConfigError(f"'judge.score_names' must be a non-empty list of distinct names, got {j.score_names}.")
    if j.combine != "mean" and j.combine not in j.score_names:
        raise ConfigError(f"Unknown choice '{j.combine}' for 'judge.combine'. Valid choices: "
                          f"{', '.join(['mean', *j.score_names])}.")
    if j.method is JudgeMethod.logprob and len(j.score_names) > 1:
        raise ConfigError("judge=logprob reads one score after a forced '<name>:'; 'judge.score_names' "
                          f"{j.score_names} needs judge=sampled.")
    if obj.pairs.sft_thresholds and len(obj.pairs.sft_thresholds) != len(j.score_names):
        raise ConfigError(f"'pairs.sft_thresholds' {obj.pairs.sft_thresholds} must give one threshold per "
                          f"'judge.score_names' entry ({', '.join(j.score_names)}), or be empty.")
    scale = {"pairs.sft_threshold": obj.pairs.sft_threshold, "pairs.min_margin": obj.pairs.min_margin,
             **{f"pairs.sft_thresholds[{k}]": v for k, v in enumerate(obj.pairs.sft_thresholds)}}
    for key, value in scale.items():
        if not 0 <= value <= j.max_score:
            raise ConfigError(f"'{key}' must be inside the judge's scale [0, judge.max_score={j.max_score}], "
                              f"got {value}.")
    for key, path in (("judge.model", j.model), ("prompts.model", obj.prompts.model)):
        if path and path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
            raise ConfigError(f"'{key}': no such checkpoint directory: {path}"
                              + (" (or: current, initial)" if key == "prompts.model" else ""))


def _validate_testbed(obj: Config) -> None:
    tb = obj.testbed
    if not tb.enabled:
        return
    constraints = tb.family is TestbedFamily.constraints
    valid = CONSTRAINT_TYPES if constraints else TESTBED_TASKS
    for key in ("tasks", "heldout_tasks"):
        unknown = [t for t in getattr(tb, key) if t not in valid]
        if unknown or (key == "tasks" and not tb.tasks):
            raise ConfigError(f"Unknown choice {unknown or tb.tasks} for 'testbed.{key}' (testbed.family="
                              f"{tb.family.value}). Valid choices: {', '.join(valid)}.")
    if tb.heldout_tasks and not constraints:
        raise ConfigError("'testbed.heldout_tasks' applies to testbed.family=constraints only.")
    if both := sorted(set(tb.tasks) & set(tb.heldout_tasks)):
        raise ConfigError(f"'testbed.tasks' and 'testbed.heldout_tasks' share {both}: a held-out type is never "
                          "trained.")
    if constraints:
        return testbed_constraints.validate(obj)
    if not tb.alphabet.isalpha() or not tb.alphabet.islower() or not 1 <= tb.min_len <= tb.max_len <= 12:
        raise ConfigError("'testbed.alphabet' must be lowercase letters and 1 <= 'testbed.min_len' <= "
                          f"'testbed.max_len' <= 12; got {tb.alphabet!r}, {tb.min_len}, {tb.max_len}.")
    if tb.heldout_version not in HELDOUT_VERSIONS:
        raise ConfigError(f"Unknown choice {tb.heldout_version} for 'testbed.heldout_version'. "
                          f"Valid choices: {', '.join(map(str, HELDOUT_VERSIONS))}.")
    for key in ("n_ift", "n_eft", "n_heldout"):
        if getattr(tb, key) < len(tb.tasks):
            raise ConfigError(f"'testbed.{key}' must be at least one per task ({len(tb.tasks)}), "
                              f"got {getattr(tb, key)}.")
    if tb.n_self_instruct < 0 or tb.n_ift < obj.prompts.num_shots:
        raise ConfigError("'testbed.n_self_instruct' must be >= 0 and 'testbed.n_ift' >= "
                          "'prompts.num_shots'.")


def launch_zero_stage(accelerate_config: Optional[str]) -> Optional[int]:
    """The DeepSpeed ZeRO stage a launch config asks for (None: no DeepSpeed)."""
    if accelerate_config is None:
        return None
    launch = OmegaConf.load(find_launch_config(accelerate_config))
    return OmegaConf.select(launch, "deepspeed_config.zero_stage", default=None)


def _validate_scale(obj: Config) -> None:
    """LoRA, data-parallel generation and prompt evolution: combinations that cannot work."""
    lora, launch = obj.lora, obj.launch
    if lora.enabled:
        if not lora.target_modules:
            raise ConfigError("LoRA needs some 'lora.target_modules' (e.g. [all-linear]), got [].")
        if not lora.merge and obj.backend is Backend.vllm:
            raise ConfigError("backend=vllm loads full checkpoints: it needs lora.merge=true.")
        if not lora.merge and launch_zero_stage(launch.accelerate_config) == 3:
            # ZeRO-3 partitions the base model while it loads, so the adapter chain cannot be merged there.
            raise ConfigError("lora.merge=false cannot start a round's training under ZeRO-3 (the saved "
                              f"adapter must be merged into unpartitioned weights); 'launch.accelerate_config'="
                              f"{launch.accelerate_config} is ZeRO-3. Use lora.merge=true or a ZeRO-2 config.")
    if launch.generation_processes > 1 and (obj.backend is Backend.vllm or launch.generation_device_map):
        raise ConfigError("'launch.generation_processes' > 1 is the HF backend's data parallelism, one model copy "
                          "per rank: use it without backend=vllm (vllm.tensor_parallel_size) and without "
                          "'launch.generation_device_map'.")
    if launch.in_process:
        conflicts = {
            "launch.generation_processes": launch.generation_processes if launch.generation_processes > 1 else None,
            "backend": "vllm" if obj.backend is Backend.vllm else None,  # vLLM frees GPU memory only on exit
        }
        if any(v is not None for v in conflicts.values()):
            got = ", ".join(f"{k}={v}" for k, v in conflicts.items() if v is not None)
            # the missing package first: fixing the launch setting alone would only lead to it
            missing = (VLLM_MISSING + " Then: " if obj.backend is Backend.vllm
                       and importlib.util.find_spec("vllm") is None else "")
            raise ConfigError(f"{missing}'launch.in_process'=true runs the generation and evaluation stages in the "
                              "orchestrator's process: it needs launch.generation_processes=1 and backend=hf "
                              f"(got {got}). Add launch.in_process=false to launch them as their own processes.")


VLLM_MISSING = ("backend=vllm needs vLLM, which is not installed: pip install 'selfreward[vllm]' (a CUDA machine), "
                "or use backend=hf.")


def _validate_variant(obj: Config) -> None:
    if any(r < 0 for r in obj.variant.rho):
        raise ConfigError(f"'variant.rho' must be a list of values >= 0, got {obj.variant.rho}.")
    obj.variant.validate(obj)
