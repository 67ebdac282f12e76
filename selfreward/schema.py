"""The configuration schema: one typed dataclass per part of the round, with help text on every
field whose name does not say it all; the values of choice keys are in `selfreward.choices`.
`selfreward.config` composes recipes against it (Hydra), `selfreward.validation` checks what the types
alone cannot, and `selfreward config` prints it resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from selfreward.choices import (
    CONSTRAINT_TYPES,
    TESTBED_TASKS,
    Backend,
    GenerationDtype,
    JudgeMethod,
    OnProblem,
    Precision,
    Reference,
    TestbedFamily,
    UpdateMethod,
)


def bounded(default: Any, interval: str, help: str = "") -> Any:
    """A scalar field whose value must lie in `interval` ("[1, inf)", "(0, 1]"): `selfreward.validation`
    checks every such field before a run starts and `selfreward config --explain` shows the bounds."""
    return field(default=default, metadata={"interval": interval, **({"help": help} if help else {})})


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
    r: int = bounded(16, "[1, inf)")
    alpha: int = bounded(32, "(0, inf)")
    dropout: float = bounded(0.05, "[0, 1)")
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Module names to adapt (e.g. [q_proj,v_proj]); [all-linear] = every linear layer."},
    )
    merge: bool = field(
        default=True,
        metadata={"help": "Save each round's model merged; false saves the adapter and its base model's path."},
    )
    init: bool = field(
        default=True,
        metadata={"help": "Train the init SFT as an adapter too; false trains M1's full weights (a randomly "
                          "initialized model, as in recipe=tiny, learns nothing through an adapter alone)."},
    )


@dataclass
class DataConfig:
    ift_path: Optional[str] = field(
        default=None, metadata={"help": "{instruction, response} records: JSONL, JSON, Parquet, Arrow or CSV, a "
                                        "folder of them, a save_to_disk folder, or a hub id; null = the shipped set."}
    )
    eft_path: Optional[str] = field(
        default=None,
        metadata={"help": "JSONL {instruction, response, judgment}; null = the shipped seed set."},
    )
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Our field name -> the file's, e.g. {instruction: prompt, response: output}."},
    )


@dataclass
class TrainConfig:
    """Settings shared by every training stage (init SFT, DPO and SFT updates)."""

    per_device_batch_size: int = bounded(8, "[1, inf)")
    gradient_accumulation_steps: int = bounded(1, "[1, inf)")
    max_length: int = bounded(512, "[1, inf)")
    precision: Precision = field(default=Precision.fp32, metadata={
        "help": "fp32 | bf16_mixed (fp32 master weights, bf16 compute: as fast as pure bf16 on AMX CPUs) | bf16 "
                "(pure bf16 weights; refused below a learning rate of 1e-5, where most updates round away) | "
                "auto (bf16_mixed where the hardware computes bf16 natively: a CUDA GPU with bf16, a CPU with "
                "AMX-BF16 or AVX512-BF16; else fp32, since emulated bf16 is many times slower than fp32)"})
    gradient_checkpointing: bool = False
    logging_steps: int = bounded(1, "[1, inf)")
    save_steps: int = bounded(500, "[1, inf)")
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "Keep a training stage's checkpoints (weights and optimizer state, about 16 bytes a parameter) "
                "after its model is saved; by default they go then: resuming needs them only while it runs."})
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "Experiment trackers TRL reports to (tensorboard, wandb, trackio, mlflow, ...); the "
                          "round's headline numbers go there too, all of a run in one tracker run."},
    )
    trainer_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Any other field of TRL's DPOConfig / SFTConfig, for the init and the updates (each "
                          "config takes the fields it has), e.g. {lr_scheduler_type: cosine, warmup_steps: 0.1}."},
    )
    verify_checkpoints: bool = field(
        default=True,
        metadata={"help": "Record the SHA-256 of every checkpoint file saved and resume only from a checkpoint "
                          "that still matches (resuming runs torch.load on them); costs a hash of each save."},
    )


@dataclass
class InitConfig:
    """The init SFT that turns the base checkpoint into M1."""

    skip: bool = field(default=False, metadata={"help": "Start from model.name_or_path as is (no IFT+EFT SFT)."})
    epochs: float = 3.0
    max_steps: int = field(default=-1, metadata={"help": "Init budget in optimizer steps; -1 = run init.epochs."})
    learning_rate: float = bounded(1e-5, "(0, inf)")
    data: str = field(
        default="ift+eft",
        metadata={"help": "What the init SFT trains on: ift+eft (answers and judgments), eft (judging only: an "
                          "instruction model that already answers), or ift (answers only: no judge training)."},
    )
    seed: Optional[int] = field(default=None, metadata={
        "help": "The init SFT's seed; null: the run seed. Set, M1 does not depend on the run seed, and a sweep over "
                "seeds trains it once (unless the init data do: the string testbed's)."})


@dataclass
class PromptsConfig:
    model: str = field(
        default="current",
        metadata={"help": "Who writes the round's prompts: current (M_t), initial (M1), or a fixed checkpoint "
                          "path or hub id (the paper uses a fixed Llama-2-Chat-70B)."},
    )
    template: str = field(default="self_instruct.txt", metadata={"help": "File in prompts/ or a path."})
    num_prompts: int = bounded(32, "[1, inf)")
    num_shots: int = bounded(8, "[1, inf)")
    max_attempts: int = bounded(4, "[1, inf)", "Generate at most num_prompts * max_attempts.")
    temperature: float = bounded(1.0, "[0, inf)", "0 = greedy.")
    top_p: float = bounded(0.95, "(0, 1]")
    max_new_tokens: int = bounded(128, "[1, inf)")
    min_words: int = bounded(3, "[1, inf)")
    max_words: int = 200
    max_similarity: float = bounded(0.7, "[0, 1]",
                                    "Drop a prompt whose word-bigram Jaccard with a kept one exceeds this.")
    drop_meta: bool = field(
        default=True, metadata={"help": "Drop replies that talk about a task instead of stating one "
                                        "(\"Here's a new task:\", \"I'm here to help\"), counted as dropped_meta."}
    )
    seed_share: float = bounded(0.0, "[0, 1)",
                                "Share of each round's prompts drawn from the seed set instead of generated.")
    evolve: bool = field(
        default=False, metadata={"help": "Rewrite a share of the generated prompts into harder versions."}
    )
    evolve_share: float = bounded(0.5, "(0, 1]")
    evolve_template: str = field(default="evolve.txt", metadata={"help": "File in prompts/ or a path."})


@dataclass
class GenerationConfig:
    num_candidates: int = bounded(4, "[1, inf)")
    temperature: float = bounded(0.7, "[0, inf)", "0 = greedy.")
    top_p: float = bounded(0.9, "(0, 1]")
    max_new_tokens: int = bounded(256, "[1, inf)")
    batch_size: int = bounded(32, "[1, inf)")
    dtype: GenerationDtype = field(default=GenerationDtype.auto, metadata={
        "help": "Generation and judging (HF backend): auto = bf16 where the hardware computes it natively "
                "(a CUDA GPU with bf16, a CPU with AMX-BF16 or AVX512-BF16), else fp32."})
    prefix_cache: bool = field(
        default=True,
        metadata={"help": "HF backend: run the prompts' shared prefix (the judge's rubric) once, in scoring "
                          "(logprob judge, win rates) and in generation (sampled judgments)."},
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
    samples: int = bounded(3, "[1, inf)", "Sampled judgments per candidate (method=sampled).")
    reasoning: bool = field(
        default=False,
        metadata={"help": "method=logprob: the judge first writes its judgment (greedy, up to max_new_tokens) "
                          "and the score tokens' probabilities are read after its '<score name>:' (GenRM); "
                          "on the testbed its EFT judgments work the check out before the score."},
    )
    temperature: float = bounded(0.7, "[0, inf)", "0 = greedy.")
    top_p: float = bounded(0.9, "(0, 1]")
    max_new_tokens: int = bounded(256, "[1, inf)")
    max_score: int = bounded(5, "[1, inf)")
    max_mode_share: float = bounded(0.9, "(0, 1]", "Warn or stop when one score is more than this share of judgments.")
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
    min_pairs: int = bounded(1, "[1, inf)", "Fewest pairs (DPO) or examples (SFT) to train on.")
    on_too_few: OnProblem = field(
        default=OnProblem.stop, metadata={"help": "stop | skip (M_{t+1} = M_t, the round trains nothing)"}
    )


@dataclass
class UpdateConfig:
    method: UpdateMethod = UpdateMethod.dpo
    reference: Reference = Reference.previous
    epochs: float = bounded(1.0, "(0, inf)")
    learning_rate: float = bounded(1e-6, "(0, inf)")
    beta: float = bounded(0.1, "(0, inf)", "DPO temperature.")
    sft_weight: float = bounded(0.0, "[0, inf)", "DPO: add this weight times the chosen response's NLL to the loss "
                                "(RPO, arXiv 2404.19733; TRL's loss_type [sigmoid, sft]): keeps the chosen answers "
                                "likely.")
    precompute_ref: bool = field(
        default=False,
        metadata={"help": "DPO: compute the reference log-probs once before training, then free the reference."},
    )


@dataclass
class VariantConfig:
    """The settings every variant has. `variant=<name>` picks a registered variant (`selfreward.variants`),
    whose config class extends this one with its own settings; `selfreward config --explain variant`
    lists them all."""

    name: str = field(default="base", metadata={"help": "The variant: one of `selfreward.variants.REGISTRY`."})
    answer_pattern: Optional[str] = field(
        default=None,
        metadata={"help": "Regex whose first group is a response's final answer, for majority votes (e.g. "
                          "'#### (.+)'); null = the whole stripped response."},
    )
    # best and worst within a length window around the shortest top-scored response
    rho: list[float] = field(
        default_factory=list,
        metadata={"help": "Length window half-width relative to that length, per round (the last repeats); "
                          "[] = no window."},
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
    win_rates: bool = field(
        default=True, metadata={"help": "Compare M_{t+1} with M_t and M1 through the evaluator (eval.judge)."}
    )
    max_new_tokens: int = bounded(128, "[1, inf)")


@dataclass
class TestbedConfig:
    """The ground-truth testbed (`recipe=testbed`, `selfreward.testbed`): checkable string tasks whose
    data is written into `<run_dir>/testbed/`, with held-out accuracy measured by the checker."""

    enabled: bool = False
    family: TestbedFamily = field(default=TestbedFamily.strings, metadata={
        "help": "strings (selfreward.testbed) or constraints (selfreward.testbed_constraints: ordinary prompts "
                "with an IFEval-style constraint appended, the base model's own samples as the judge's EFT)."})
    tasks: list[str] = field(
        default_factory=lambda: ["reverse", "sort", "count", "add"],
        metadata={"help": f"strings: {' | '.join(TESTBED_TASKS)}; constraints: the trained types, of "
                          f"{' | '.join(CONSTRAINT_TYPES)}"},
    )
    heldout_tasks: list[str] = field(default_factory=list, metadata={
        "help": "constraints: types never trained on (no self-written prompt gets one), reported apart."})
    eft_samples: int = field(default=4, metadata={
        "help": "constraints: the base model's samples per seed prompt that the EFT set is labelled from."})
    alphabet: str = "abcdefgh"
    min_len: int = field(default=3, metadata={"help": "Shortest word (pair: list of digits, at least 3)."})
    max_len: int = field(default=6, metadata={"help": "Longest word (pair: list of digits)."})
    max_number: int = bounded(49, "[0, 999]", "add: operands are drawn from 0..max_number.")
    n_ift: int = field(default=2000, metadata={
        "help": "IFT: task instances with their correct answer (constraints: seed prompts, the self-instruct shots)."})
    n_self_instruct: int = field(default=300, metadata={"help": "IFT: k-shot prompt-writing demonstrations."})
    n_eft: int = field(default=2000, metadata={
        "help": "EFT: instances with a right or a wrong answer, judged (constraints: at most, class-balanced)."})
    n_heldout: int = field(default=200, metadata={
        "help": "Held-out instances (each judged right and wrong too); constraints: at most, the types taking turns."})
    heldout_seed: int = field(default=1234, metadata={"help": "Fixes the held-out set across run seeds."})
    heldout_version: int = field(default=1, metadata={
        "help": "The held-out set's generator, frozen once published (1: the only one so far). Training-side "
                "corruptions may change; held-out ones only under a new version, never compared with the old."})


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
    generation_processes: int = bounded(1, "[1, inf)",
                                        "HF backend: data-parallel generation ranks (e.g. one per GPU).")
    generation_device_map: Optional[str] = field(
        default=None, metadata={"help": "HF backend, one rank: 'auto' spreads a model too big for one GPU."}
    )
    stall_timeout: float = bounded(1800.0, "[0, inf)", "Stop a stage process after this many seconds without output "
                                   "or a file written in the run directory, with a message saying where it stalled "
                                   "(0 = never).")
    in_process: bool = field(
        default=False,
        metadata={"help": "Run the generation and evaluation stages (and training, when it needs no launcher: "
                          "accelerate_config=null) inside the orchestrator instead of a fresh Python process "
                          "each, so torch and transformers load once per run. Needs generation_processes=1 "
                          "and backend=hf."},
    )


@dataclass
class Config:
    run_dir: str = MISSING
    seed: int = 0
    rounds: int = bounded(2, "[0, inf)", "Self-rewarding rounds after the init; 0 runs only the init stage.")
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
    # a VariantConfig subclass, the one its `name` registers (`selfreward.validation` picks it)
    variant: Any = field(default_factory=VariantConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    testbed: TestbedConfig = field(default_factory=TestbedConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
