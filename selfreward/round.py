"""The round as one table: every stage, what it writes, which model runs it, what it reads, who runs
it, how it draws its randomness, and which settings shape it.

The rest of the package derives from this table: the run directory's layout (`rundir`), the
generation worker's runners, models and inputs (`stages`), the orchestrator's order and which changed
settings a finished stage refuses (`loop`), what `status` expects, and every stage's seed. A variant
that needs a new stage adds one row here and, when the stage samples or judges, one runner.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Stage:
    name: str
    # What it writes in round_<t>/ (the first is its main output; the rest are moved with it on restart).
    files: tuple[str, ...]
    # Who runs it: "policy" (M_t), "initial" (M1), "previous" (M_{t-1}), "lookahead" (the temporal
    # variant's model), "judge" (judge.model, or M_t itself; no model for variant=random and
    # judge.method=oracle), "prompt_writer" (prompts.model: M_t, M1 or a fixed model); None when no
    # model generates for it.
    model: str | None = None
    # The stages whose outputs it reads.
    inputs: tuple[str, ...] = ()
    # Generation stages: the generation worker's runner (`selfreward.stages.RUNNERS`); "train": a
    # training stage the orchestrator launches; None: the orchestrator does it in-process.
    runner: str | None = None
    # Its offset in the per-(seed, round, stage) sampling seed; unique per stage.
    seed: int | None = None
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

TABLE = (
    Stage("prompts", ("prompts.jsonl",), "prompt_writer", (), "prompts", 0, ("prompts",)),
    Stage("candidates", ("candidates.jsonl",), "policy", ("prompts",), "sample", 1, ("generation",)),
    Stage("judge", ("judgments.jsonl",), "judge", ("candidates",), "judge", 2, ("judge", "variant.name"), _judged,
          "votes rank the candidates (self_consistency)"),
    Stage("second_judge", ("judgments_second.jsonl",), "judge", ("candidates",), "second_judge", 3,
          ("variant.second_judge", "variant.second_template"), _variant(VariantName.consistency)),
    Stage("meta_judge", ("meta_judgments.jsonl",), "judge", ("candidates", "judge"), "meta_judge", 4,
          ("variant.meta_template",), _variant(VariantName.meta)),
    Stage("anchor_candidates", ("anchor_candidates.jsonl",), "initial", ("prompts",), "sample", 5,
          ("variant.anchored_rejection",), _temporal_anchor),
    Stage("anchor_judge", ("anchor_judgments.jsonl",), "judge", ("anchor_candidates",), "judge", 6, (),
          _temporal_anchor),
    Stage("lookahead", ("lookahead",), None, ("candidates", "judge"), "train", None, ("variant.future_chosen",),
          _temporal_future),
    Stage("future_candidates", ("future_candidates.jsonl",), "lookahead", ("prompts",), "sample", 7, (),
          _temporal_future),
    Stage("future_judge", ("future_judgments.jsonl",), "judge", ("future_candidates",), "judge", 8, (),
          _temporal_future),
    Stage("previous_judge", ("judgments_previous.jsonl",), "previous", ("candidates",), "judge", 10, (),
          _cream_from_round_2),
    Stage("pairs", ("pairs.jsonl", "sft.jsonl"), None, ("candidates", "judge"), None, 11,  # CREAM's flips
          ("pairs", "update.method", "variant.meta_share", "variant.rho", "variant.length_control",
           "variant.answer_pattern", "variant.min_vote_share", "variant.min_vote_margin")),
    Stage("update", ("model", "train"), None, ("pairs",), "train", None, ("update",)),
    Stage("evaluate", ("eval.json", "eval_responses.jsonl"), None, ("update",), None, 9, ("eval",)),
)
STAGE = {s.name: s for s in TABLE}
ROUND_STAGES = tuple(STAGE)
GENERATION_STAGES = tuple(s.name for s in TABLE if s.runner not in (None, "train"))
TRAINING_STAGES = ("init", *(s.name for s in TABLE if s.runner == "train"))


def round_stages(cfg: Config, t: int = 1) -> list[Stage]:
    """The stages round t of this config runs, in order."""
    return [s for s in TABLE if s.when(cfg, t)]


# Settings under those prefixes that shape nothing a stage writes: how training is watched.
WATCH_SETTINGS = ("train.verify_checkpoints", "train.keep_checkpoints", "train.report_to")


def setting_stages() -> dict[str, str | None]:
    """Setting (key or prefix) -> the first stage it shapes (None: none)."""
    out = {**dict.fromkeys(INIT_SETTINGS, "init"), **dict.fromkeys(WATCH_SETTINGS)}
    for stage in TABLE:
        for key in stage.settings:
            out.setdefault(key, stage.name)
    return out


def stage_seed(cfg: Config, t: int, stage: str) -> int:
    """The sampling seed of a stage, deterministic per (run seed, round, stage), so rerunning one
    stage reproduces it. Round 0 is the init's evaluation."""
    return cfg.seed * 100_003 + t * 101 + STAGE[stage].seed
