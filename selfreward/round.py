"""The round as one table: every stage, what it writes, which model runs it, what it reads, who runs
it, how it draws its randomness, and which settings shape it.

The rest of the package derives from this table: the run directory's layout (`rundir`), the
generation worker's runners, models and inputs (`stages`), the orchestrator's order and which changed
settings a finished stage refuses (`loop`), what `status` expects, and every stage's seed. A variant
that needs a new stage adds one row here and, when the stage samples or judges, one runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from selfreward.schema import Config, VariantName


def _always(cfg: Config, t: int) -> bool:
    return True


def _variant(*names: VariantName, also: Callable[[Config], bool] = lambda cfg: True) -> Callable[[Config, int], bool]:
    return lambda cfg, t: cfg.variant.name in names and also(cfg)


def _judged(cfg: Config, t: int) -> bool:
    return cfg.variant.name is not VariantName.self_consistency  # votes rank its candidates instead


def _cream_from_round_2(cfg: Config, t: int) -> bool:
    return cfg.variant.name is VariantName.cream and t >= 2  # round 1's M_t has no judged previous model


_temporal_anchor = _variant(VariantName.temporal, also=lambda cfg: cfg.variant.anchored_rejection)
_temporal_future = _variant(VariantName.temporal, also=lambda cfg: cfg.variant.future_chosen)


class StageName(str, Enum):
    """Every stage's name: its row below, its manifest entry, its log's name and its `restart_from`
    value (the init is round 0's stage, not a round stage)."""

    init = "init"
    prompts = "prompts"
    candidates = "candidates"
    judge = "judge"
    second_judge = "second_judge"
    meta_judge = "meta_judge"
    anchor_candidates = "anchor_candidates"
    anchor_judge = "anchor_judge"
    lookahead = "lookahead"
    future_candidates = "future_candidates"
    future_judge = "future_judge"
    previous_judge = "previous_judge"
    pairs = "pairs"
    update = "update"
    evaluate = "evaluate"

    # a member reads as its name wherever it is written: paths, manifests, logs, messages
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Role(str, Enum):
    """Which model runs a stage (`RunDir.stage_model` resolves it for round t)."""

    policy = "policy"  # M_t
    initial = "initial"  # M1
    previous = "previous"  # M_{t-1}
    lookahead = "lookahead"  # the temporal variant's look-ahead model
    judge = "judge"  # judge.model, or M_t itself; no model for variant=random and judge.method=oracle
    prompt_writer = "prompt_writer"  # prompts.model: M_t, M1 or a fixed model


class Runner(str, Enum):
    """Who runs a stage: a generation runner of the worker (`selfreward.stages.RUNNERS`), a training
    launch (`selfreward.train.*`), the evaluation (`selfreward.evaluate`), or the orchestrator itself."""

    prompts = "prompts"
    sample = "sample"
    judge = "judge"
    second_judge = "second_judge"
    meta_judge = "meta_judge"
    train = "train"
    evaluate = "evaluate"
    orchestrator = "orchestrator"


@dataclass(frozen=True)
class Stage:
    name: StageName
    # What it writes in round_<t>/ (the first is its main output; the rest are moved with it on restart).
    files: tuple[str, ...]
    runner: Runner
    # Its offset in the per-(seed, round, stage) sampling seed; unique per stage.
    seed: int | None = None
    model: Role | None = None  # None when no model generates for it
    inputs: tuple[StageName, ...] = ()  # the stages whose outputs it reads
    # Config keys (or key prefixes) that shape what it writes: a finished stage refuses to rerun
    # under changed values of these (see `resume.freeze`).
    settings: tuple[str, ...] = ()
    # Whether a round of this config runs it.
    when: Callable[[Config, int], bool] = _always
    # For a stage of the paper's round that a variant leaves out: why (`status` shows it).
    skipped: str = ""


# The init stage (round 0): not a round stage, but the settings that shape M1 are refused the same way.
# judge.reasoning: the testbed writes its EFT judgments with the check worked out.
INIT_SETTINGS = ("seed", "model", "data", "train", "init", "lora", "judge.template", "judge.reasoning", "testbed")

N = StageName
TABLE = (
    Stage(N.prompts, ("prompts.jsonl",), Runner.prompts, seed=0, model=Role.prompt_writer, settings=("prompts",)),
    Stage(N.candidates, ("candidates.jsonl",), Runner.sample, seed=1, model=Role.policy, inputs=(N.prompts,),
          settings=("generation",)),
    Stage(N.judge, ("judgments.jsonl",), Runner.judge, seed=2, model=Role.judge, inputs=(N.candidates,),
          settings=("judge", "variant.name"), when=_judged, skipped="votes rank the candidates (self_consistency)"),
    Stage(N.second_judge, ("judgments_second.jsonl",), Runner.second_judge, seed=3, model=Role.judge,
          inputs=(N.candidates,), settings=("variant.second_judge", "variant.second_template"),
          when=_variant(VariantName.consistency)),
    Stage(N.meta_judge, ("meta_judgments.jsonl",), Runner.meta_judge, seed=4, model=Role.judge,
          inputs=(N.candidates, N.judge), settings=("variant.meta_template",), when=_variant(VariantName.meta)),
    Stage(N.anchor_candidates, ("anchor_candidates.jsonl",), Runner.sample, seed=5, model=Role.initial,
          inputs=(N.prompts,), settings=("variant.anchored_rejection",), when=_temporal_anchor),
    Stage(N.anchor_judge, ("anchor_judgments.jsonl",), Runner.judge, seed=6, model=Role.judge,
          inputs=(N.anchor_candidates,), when=_temporal_anchor),
    Stage(N.lookahead, ("lookahead",), Runner.train, inputs=(N.candidates, N.judge),
          settings=("variant.future_chosen",), when=_temporal_future),
    Stage(N.future_candidates, ("future_candidates.jsonl",), Runner.sample, seed=7, model=Role.lookahead,
          inputs=(N.prompts,), when=_temporal_future),
    Stage(N.future_judge, ("future_judgments.jsonl",), Runner.judge, seed=8, model=Role.judge,
          inputs=(N.future_candidates,), when=_temporal_future),
    Stage(N.previous_judge, ("judgments_previous.jsonl",), Runner.judge, seed=10, model=Role.previous,
          inputs=(N.candidates,), when=_cream_from_round_2),
    Stage(N.pairs, ("pairs.jsonl", "sft.jsonl"), Runner.orchestrator, seed=11,  # seed: CREAM's flips
          inputs=(N.candidates, N.judge),
          settings=("pairs", "update.method", "variant.meta_share", "variant.rho", "variant.length_control",
                    "variant.answer_pattern", "variant.min_vote_share", "variant.min_vote_margin")),
    Stage(N.update, ("model", "train"), Runner.train, inputs=(N.pairs,), settings=("update",)),
    Stage(N.evaluate, ("eval.json", "eval_responses.jsonl"), Runner.evaluate, seed=9, inputs=(N.update,),
          settings=("eval",)),
)
del N
STAGE = {s.name: s for s in TABLE}
ROUND_STAGES = tuple(STAGE)
GENERATION_STAGES = tuple(s.name for s in TABLE if s.runner in (Runner.prompts, Runner.sample, Runner.judge,
                                                                Runner.second_judge, Runner.meta_judge))
TRAINING_STAGES = (StageName.init, *(s.name for s in TABLE if s.runner is Runner.train))


def round_stages(cfg: Config, t: int = 1) -> list[Stage]:
    """The stages round t of this config runs, in order."""
    return [s for s in TABLE if s.when(cfg, t)]


# Settings under those prefixes that shape nothing a stage writes: how training is watched.
WATCH_SETTINGS = ("train.verify_checkpoints", "train.keep_checkpoints", "train.report_to")


def setting_stages() -> dict[str, str | None]:
    """Setting (key or prefix) -> the first stage it shapes (None: none)."""
    out = {**dict.fromkeys(INIT_SETTINGS, StageName.init), **dict.fromkeys(WATCH_SETTINGS)}
    for stage in TABLE:
        for key in stage.settings:
            out.setdefault(key, stage.name)
    return out


def restart_value(t: int, stage: StageName) -> str:
    """The `restart_from` value that redoes `stage` of round t: init, judge (round 1), round_2.judge."""
    return str(StageName.init) if not t else str(stage) if t == 1 else f"round_{t}.{stage}"


def log_name(t: int, part: str) -> str:
    """The stem of a stage process's log in <run_dir>/logs/ (and its TensorBoard folder): round_2.judge,
    round_2.generation; the init's: init, init.evaluate."""
    if t:
        return f"round_{t}.{part}"
    return str(StageName.init) if part == StageName.init else f"{StageName.init}.{part}"


def stage_seed(cfg: Config, t: int, stage: StageName) -> int:
    """The sampling seed of a stage, deterministic per (run seed, round, stage), so rerunning one
    stage reproduces it. Round 0 is the init's evaluation."""
    return cfg.seed * 100_003 + t * 101 + STAGE[stage].seed
