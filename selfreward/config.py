"""Typed configuration: one dataclass per part of the round, composed by Hydra from `recipes/`.

The orchestrator composes once (`compose`) and freezes the result to `<run_dir>/config.yaml`; every
subprocess (generation worker, `accelerate launch` trainers) reads that file back with `load_frozen`
and never composes again, so several ranks never re-resolve the config.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Optional

from omegaconf import MISSING, OmegaConf

from selfreward.resources import RECIPES_DIR, find_launch_config, find_prompt


class ConfigError(ValueError):
    """A bad key or value. The CLI prints the message and exits with code 2."""


class UpdateMethod(str, Enum):
    dpo = "dpo"
    sft = "sft"


class JudgeMethod(str, Enum):
    sampled = "sampled"
    logprob = "logprob"


class Reference(str, Enum):
    previous = "previous"  # M_t, the paper's choice
    initial = "initial"  # M_1


class OnProblem(str, Enum):
    stop = "stop"
    warn = "warn"
    skip = "skip"  # pairs.on_too_few only: keep M_t as M_{t+1}


class Backend(str, Enum):
    hf = "hf"
    vllm = "vllm"


class VariantName(str, Enum):
    base = "base"
    meta = "meta"
    temporal = "temporal"
    consistency = "consistency"
    length = "length"
    seed_anchored = "seed_anchored"


@dataclass
class TinyModelConfig:
    """The random-initialized Llama used when `model.name_or_path` is null (no download needed)."""

    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary trained on the seed text."})
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 1024


@dataclass
class ModelConfig:
    name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Local checkpoint or hub id of an instruction model; null builds the tiny model."},
    )
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    trust_remote_code: bool = False
    chat_template: Optional[str] = field(
        default=None,
        metadata={"help": "Jinja chat template (file in prompts/ or a path) for a tokenizer that has none."},
    )


@dataclass
class LoraConfig:
    """LoRA via peft for the init SFT and every update. DPO's reference is then the same model with
    the adapter disabled: no second copy of the weights in memory."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Module names to adapt (e.g. [q_proj,v_proj]); [all-linear] = every linear layer."},
    )
    merge: bool = field(
        default=True,
        metadata={"help": "Save each round's model merged; false saves the adapter and its base model's path."},
    )


@dataclass
class DataConfig:
    ift_path: Optional[str] = field(
        default=None, metadata={"help": "JSONL {instruction, response}; null = the shipped seed set."}
    )
    eft_path: Optional[str] = field(
        default=None,
        metadata={"help": "JSONL {instruction, response, judgment}; null = the shipped seed set."},
    )


@dataclass
class TrainConfig:
    """Settings shared by every training stage (init SFT, DPO and SFT updates)."""

    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    save_steps: int = 500


@dataclass
class InitConfig:
    skip: bool = field(default=False, metadata={"help": "Start from model.name_or_path as is (no IFT+EFT SFT)."})
    epochs: float = 3.0
    learning_rate: float = 1e-5
    use_eft: bool = field(default=True, metadata={"help": "Add the judge-format EFT data to the init SFT."})


@dataclass
class PromptsConfig:
    template: str = field(default="self_instruct.txt", metadata={"help": "File in prompts/ or a path."})
    num_prompts: int = 32
    num_shots: int = 8
    max_attempts: int = field(default=4, metadata={"help": "Generate at most num_prompts * max_attempts."})
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 128
    min_words: int = 3
    max_words: int = 200
    max_similarity: float = field(
        default=0.7, metadata={"help": "Drop a prompt whose word-bigram Jaccard with a kept one exceeds this."}
    )
    seed_share: float = field(
        default=0.0,
        metadata={"help": "Share of each round's prompts drawn from the seed set instead of generated."},
    )
    evolve: bool = field(
        default=False, metadata={"help": "Rewrite a share of the generated prompts into harder versions."}
    )
    evolve_share: float = 0.5
    evolve_template: str = field(default="evolve.txt", metadata={"help": "File in prompts/ or a path."})


@dataclass
class GenerationConfig:
    num_candidates: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    batch_size: int = 32
    prefix_cache: bool = field(
        default=True,
        metadata={"help": "HF backend, scoring (logprob judge, win rates): run the prompts' shared prefix once."},
    )


@dataclass
class JudgeConfig:
    method: JudgeMethod = JudgeMethod.sampled
    template: str = field(default="judge.txt", metadata={"help": "File in prompts/ or a path."})
    model: Optional[str] = field(
        default=None,
        metadata={"help": "A fixed other model judges (checkpoint path or hub id); null = the policy M_t itself."},
    )
    score_names: list[str] = field(
        default_factory=lambda: ["Score"],
        metadata={"help": "The labelled scores the template asks for, each parsed from '<name>: X'."},
    )
    combine: str = field(
        default="mean", metadata={"help": "How several scores rank a candidate: 'mean' or one of score_names."}
    )
    samples: int = field(default=3, metadata={"help": "Sampled judgments per candidate (method=sampled)."})
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    max_score: int = 5
    max_mode_share: float = field(
        default=0.9, metadata={"help": "Warn or stop when one score is more than this share of judgments."}
    )
    on_collapse: OnProblem = field(default=OnProblem.warn, metadata={"help": "warn | stop"})


@dataclass
class PairsConfig:
    min_margin: float = field(default=0.0, metadata={"help": "DPO: keep a pair only if best - worst >= this."})
    sft_threshold: float = field(
        default=4.0, metadata={"help": "SFT: keep candidates whose every score is >= this (or its own threshold)."}
    )
    sft_thresholds: list[float] = field(
        default_factory=list,
        metadata={"help": "SFT: one threshold per judge.score_names entry; empty = sft_threshold for each."},
    )
    min_pairs: int = field(default=1, metadata={"help": "Fewest pairs (DPO) or examples (SFT) to train on."})
    on_too_few: OnProblem = field(
        default=OnProblem.stop, metadata={"help": "stop | skip (M_{t+1} = M_t, the round trains nothing)"}
    )


@dataclass
class UpdateConfig:
    method: UpdateMethod = UpdateMethod.dpo
    reference: Reference = Reference.previous
    epochs: float = 1.0
    learning_rate: float = 1e-6
    beta: float = field(default=0.1, metadata={"help": "DPO temperature."})
    precompute_ref: bool = field(
        default=False,
        metadata={"help": "DPO: compute the reference log-probs once before training, then free the reference."},
    )


@dataclass
class VariantConfig:
    """Which self-rewarding variant runs (`variant=<name>` picks recipes/variant/<name>.yaml) and the
    settings of each; a setting is read only by its variant."""

    name: VariantName = VariantName.base
    # meta: Meta-Rewarding (arXiv 2407.19594)
    meta_share: float = field(
        default=0.15, metadata={"help": "meta: most judge pairs may be of all pairs (more collapses the judge)."}
    )
    meta_template: str = field(default="meta_judge.txt", metadata={"help": "meta: file in prompts/ or a path."})
    # temporal: Temporal Self-Rewarding (arXiv 2508.06026)
    anchored_rejection: bool = field(default=True, metadata={"help": "temporal: rejected responses come from M1."})
    future_chosen: bool = field(
        default=True, metadata={"help": "temporal: chosen responses come from a look-ahead model one step ahead."}
    )
    # consistency: keep a pair only when a second judge agrees on its order (after SCIR, arXiv 2502.08922)
    second_judge: JudgeMethod = field(default=JudgeMethod.logprob, metadata={"help": "consistency: its method."})
    second_template: Optional[str] = field(
        default=None, metadata={"help": "consistency: its template; null = judge.template."}
    )
    # length: best and worst within a length window around the shortest top-scored response
    rho: list[float] = field(
        default_factory=lambda: [0.5],
        metadata={"help": "length: window half-width relative to that length, per round (the last repeats)."},
    )


@dataclass
class EvalConfig:
    """The evaluation stage after each update (`round_<t>/eval.json`)."""

    enabled: bool = True
    prompts_path: Optional[str] = field(
        default=None, metadata={"help": "Held-out JSONL {id, prompt} for win rates; null = shipped set."}
    )
    eft_path: Optional[str] = field(
        default=None,
        metadata={"help": "Held-out JSONL {instruction, response, judgment, score} for judge quality."},
    )
    judge: str = field(
        default="initial", metadata={"help": "Fixed evaluator for win rates: 'initial' (M1) or a checkpoint."}
    )
    template: str = field(default="compare.txt", metadata={"help": "Pairwise template in prompts/ or a path."})
    max_new_tokens: int = 128


@dataclass
class VllmConfig:
    """Used only with backend=vllm."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 4096
    enable_prefix_caching: bool = field(
        default=True, metadata={"help": "Reuse the KV cache of shared prefixes (the judge rubric)."}
    )


@dataclass
class LaunchConfig:
    """How stages are started; may change between reruns of a run."""

    accelerate_config: Optional[str] = field(
        default="cpu_zero2",
        metadata={"help": "Name of a file in launch/ or a path; null trains in one plain python process."},
    )
    launcher: Optional[str] = field(
        default=None,
        metadata={"help": "Command that replaces `accelerate launch --config_file <file>` for training, e.g. "
                          "'srun --ntasks-per-node=1 bash launch/slurm_node.sh' (gets '-m module args...')."},
    )
    generation_processes: int = field(
        default=1, metadata={"help": "HF backend: data-parallel generation ranks (e.g. one per GPU)."}
    )
    generation_device_map: Optional[str] = field(
        default=None, metadata={"help": "HF backend, one rank: 'auto' spreads a model too big for one GPU."}
    )


@dataclass
class Config:
    run_dir: str = MISSING
    seed: int = 0
    rounds: int = 2
    backend: Backend = Backend.hf
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    variant: VariantConfig = field(default_factory=VariantConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


# Config groups: a directory in recipes/ whose files set one sub-tree (`update=sft`).
GROUPS = ("update", "judge", "variant")
SCHEMA_NAME = "selfreward_schema"


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (RECIPES_DIR / group).glob("*.yaml"))


def _check_override_key(key: str) -> None:
    """Name the bad key, the closest valid one and the valid keys at that level."""
    node = OmegaConf.structured(Config)
    walked: list[str] = []
    for part in key.split("."):
        if not OmegaConf.is_config(node) or part not in node.keys():
            valid = list(node.keys()) if OmegaConf.is_config(node) else []
            where = ".".join(walked) or "the top level"
            hint = difflib.get_close_matches(part, valid, n=1)
            suggestion = f" Did you mean '{'.'.join(walked + hint)}'?" if hint else ""
            raise ConfigError(
                f"Unknown config key '{key}'.{suggestion} Valid keys at {where}: {', '.join(valid)}."
            )
        node = node._get_node(part)
        walked.append(part)


# Command-line words that act on a run instead of configuring it; never stored in config.yaml.
DIRECTIVES = ("restart_from",)


def split_recipe(overrides: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """Parse overrides with Hydra's grammar, validate keys and group choices, pull out `recipe=`
    and the DIRECTIVES."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"Cannot parse overrides: {e}") from None
    recipe, rest, directives = "tiny", [], {}
    for text, o in zip(overrides, parsed):
        key = o.key_or_group
        if o.is_sweep_override():
            raise ConfigError(f"'{text}' is a sweep; `selfreward run` takes one value per key.")
        if key == "recipe":
            recipe = o.value()
            if recipe not in recipes():
                raise ConfigError(f"Unknown recipe '{recipe}'. Valid choices for 'recipe': {', '.join(recipes())}.")
            continue
        if key in DIRECTIVES:
            directives[key] = str(o.value())
            continue
        if key in GROUPS:
            if o.value() not in group_options(key):
                raise ConfigError(
                    f"Unknown choice '{o.value()}' for '{key}'. Valid choices: {', '.join(group_options(key))}."
                )
        elif not o.is_delete():
            _check_override_key(key)
        rest.append(text)
    return recipe, rest, directives


def compose(overrides: list[str]) -> Config:
    """Compose `recipe=<name>` (default tiny) with Hydra overrides into a validated Config."""
    return parse_command(overrides)[0]


def parse_command(overrides: list[str]) -> tuple[Config, dict[str, str]]:
    """Like `compose`, also returning the directives (e.g. restart_from) given on the command line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    recipe, rest, directives = split_recipe(overrides)
    _register_schema()
    try:
        with initialize_config_dir(config_dir=str(RECIPES_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=recipe, overrides=rest)
        return validate(cfg), directives
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_readable(e)) from None


def _readable(e: Exception) -> str:
    cause = e.__cause__ or e
    key = getattr(cause, "full_key", None)
    msg = str(cause).split("\n")[0]
    return f"Bad value for '{key}': {msg}" if key else msg


def validate(cfg) -> Config:
    """Turn a DictConfig into a Config and check what the types alone cannot."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        obj: Config = OmegaConf.to_object(merged)
    except Exception as e:  # OmegaConf reports type and missing-value errors with the full key
        raise ConfigError(_readable(e)) from None
    if obj.rounds < 0:
        raise ConfigError(f"'rounds' must be >= 0 (0 runs only the init stage), got {obj.rounds}.")
    positive = {
        "prompts.num_prompts": obj.prompts.num_prompts,
        "prompts.num_shots": obj.prompts.num_shots,
        "generation.num_candidates": obj.generation.num_candidates,
        "generation.batch_size": obj.generation.batch_size,
        "judge.samples": obj.judge.samples,
        "judge.max_score": obj.judge.max_score,
        "train.per_device_batch_size": obj.train.per_device_batch_size,
        "pairs.min_pairs": obj.pairs.min_pairs,  # a trainer given nothing to train on fails late
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"'{key}' must be at least 1, got {value}.")
    if obj.update.method is UpdateMethod.dpo and obj.generation.num_candidates < 2:
        raise ConfigError("'generation.num_candidates' must be at least 2 for update=dpo (pairs need two).")
    if obj.judge.on_collapse is OnProblem.skip:
        raise ConfigError("'judge.on_collapse' must be one of [warn, stop], got skip.")
    if obj.pairs.on_too_few is OnProblem.warn:
        raise ConfigError("'pairs.on_too_few' must be one of [stop, skip], got warn.")
    if not 0.0 <= obj.prompts.max_similarity <= 1.0:
        raise ConfigError(f"'prompts.max_similarity' must be in [0, 1], got {obj.prompts.max_similarity}.")
    _validate_variant(obj)
    _validate_judge(obj)
    _validate_scale(obj)
    templates = (("prompts.template", obj.prompts.template), ("judge.template", obj.judge.template),
                 ("prompts.evolve_template", obj.prompts.evolve_template),
                 ("eval.template", obj.eval.template), ("variant.meta_template", obj.variant.meta_template),
                 ("variant.second_template", obj.variant.second_template or obj.judge.template))
    for key, value in templates:
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


def _validate_judge(obj: Config) -> None:
    j = obj.judge
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
    if j.model and j.model.startswith(("/", "./", "../", "~")) and not Path(j.model).expanduser().is_dir():
        raise ConfigError(f"'judge.model': no such checkpoint directory: {j.model}")


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
        if lora.r < 1 or lora.alpha <= 0 or not 0.0 <= lora.dropout < 1.0 or not lora.target_modules:
            raise ConfigError(f"LoRA needs 'lora.r' >= 1, 'lora.alpha' > 0, 'lora.dropout' in [0, 1) and some "
                              f"'lora.target_modules'; got r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, "
                              f"target_modules={lora.target_modules}.")
        if not lora.merge and obj.backend is Backend.vllm:
            raise ConfigError("backend=vllm loads full checkpoints: it needs lora.merge=true.")
        if not lora.merge and launch_zero_stage(launch.accelerate_config) == 3:
            # ZeRO-3 partitions the base model while it loads, so the adapter chain cannot be merged there.
            raise ConfigError("lora.merge=false cannot start a round's training under ZeRO-3 (the saved "
                              f"adapter must be merged into unpartitioned weights); 'launch.accelerate_config'="
                              f"{launch.accelerate_config} is ZeRO-3. Use lora.merge=true or a ZeRO-2 config.")
    if launch.generation_processes < 1:
        raise ConfigError(f"'launch.generation_processes' must be at least 1, got {launch.generation_processes}.")
    if launch.generation_processes > 1 and (obj.backend is Backend.vllm or launch.generation_device_map):
        raise ConfigError("'launch.generation_processes' > 1 is the HF backend's data parallelism, one model copy "
                          "per rank: use it without backend=vllm (vllm.tensor_parallel_size) and without "
                          "'launch.generation_device_map'.")
    if obj.prompts.evolve and not 0.0 < obj.prompts.evolve_share <= 1.0:
        raise ConfigError(f"'prompts.evolve_share' must be in (0, 1], got {obj.prompts.evolve_share}.")


def _validate_variant(obj: Config) -> None:
    v, name = obj.variant, obj.variant.name
    if not 0.0 <= obj.prompts.seed_share < 1.0:
        raise ConfigError(f"'prompts.seed_share' must be in [0, 1), got {obj.prompts.seed_share}.")
    if name is VariantName.seed_anchored and obj.prompts.seed_share == 0:
        raise ConfigError("variant=seed_anchored needs 'prompts.seed_share' > 0.")
    if name is VariantName.meta:
        if obj.judge.method is not JudgeMethod.sampled or obj.judge.samples < 2:
            got = f"method={obj.judge.method.value}, samples={obj.judge.samples}"
            raise ConfigError("variant=meta compares judgments of one response: it needs judge=sampled and "
                              f"'judge.samples' >= 2 (got {got}).")
        if not 0.0 < v.meta_share < 1.0:
            raise ConfigError(f"'variant.meta_share' must be in (0, 1), got {v.meta_share}.")
    if name is VariantName.temporal:
        if obj.update.method is not UpdateMethod.dpo:
            raise ConfigError("variant=temporal shapes both sides of a preference pair: it needs update=dpo.")
        if not (v.anchored_rejection or v.future_chosen):
            raise ConfigError("variant=temporal with both 'variant.anchored_rejection' and "
                              "'variant.future_chosen' false is variant=base.")
    if name is VariantName.consistency and v.second_judge is obj.judge.method and (
        v.second_template or obj.judge.template) == obj.judge.template:
        raise ConfigError("variant=consistency needs a second judge that differs from the first: set "
                          "'variant.second_judge' (method) or 'variant.second_template'.")
    if name is VariantName.length and (not v.rho or any(r < 0 for r in v.rho)):
        raise ConfigError(f"'variant.rho' must be a non-empty list of values >= 0, got {v.rho}.")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def load_frozen(run_dir: str | Path) -> Config:
    """Read the resolved config the orchestrator wrote; used by every stage subprocess."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"No frozen config at {path}; start the run with `selfreward run`.")
    return validate(OmegaConf.load(path))
