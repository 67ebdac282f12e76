"""Temporal Self-Rewarding (arXiv 2508.06026): anchored rejection (the rejected response is the worst
of M1's candidates, judged by M_t) and future-guided chosen (the chosen response is the best sample of
a look-ahead model, trained one DPO step ahead on the round's draft pairs). Each part switches on
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from selfreward.errors import ConfigError
from selfreward.files import write_jsonl
from selfreward.round import Role, Runner, Stage, StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, UpdateMethod
from selfreward.variants.base import JUDGED, Variant

ANCHOR_CANDIDATES, ANCHOR_JUDGE = "anchor_candidates", "anchor_judge"
LOOKAHEAD, FUTURE_CANDIDATES, FUTURE_JUDGE = "lookahead", "future_candidates", "future_judge"


def _anchored(cfg: Config, t: int) -> bool:
    return cfg.variant.anchored_rejection


def _future(cfg: Config, t: int) -> bool:
    return cfg.variant.future_chosen


def write_draft_pairs(cfg: Config, rd: RunDir, t: int) -> None:
    """The look-ahead model's training data: the round's pairs with chosen from M_t's candidates."""
    draft, drops = cfg.variant.preference_pairs(cfg, rd, t, future=False)
    if not draft:
        raise ConfigError(f"Round {t}: no draft pairs to train the look-ahead model on ({drops}).")
    write_jsonl(rd.training_input(cfg, t, LOOKAHEAD), draft)


def lookahead_model(rd: RunDir, cfg: Config, t: int) -> str:
    return str(rd.trained_model(t, LOOKAHEAD))


# Its stages, after the judge: M1's candidates and their judgments, the look-ahead model, its
# candidates and their judgments.
STAGES = (
    Stage(ANCHOR_CANDIDATES, ("anchor_candidates.jsonl",), Runner.sample, seed=5, model=Role.initial,
          inputs=(StageName.prompts,), settings=("variant.anchored_rejection",), after=StageName.judge,
          when=_anchored),
    Stage(ANCHOR_JUDGE, ("anchor_judgments.jsonl",), Runner.judge, seed=6, model=Role.judge,
          inputs=(ANCHOR_CANDIDATES,), after=ANCHOR_CANDIDATES, when=_anchored),
    # trains with DPO on the draft pairs `run` writes into its folder
    Stage(LOOKAHEAD, ("lookahead",), Runner.train, inputs=(StageName.candidates, StageName.judge),
          settings=("variant.future_chosen",), after=ANCHOR_JUDGE, when=_future, run=write_draft_pairs),
    Stage(FUTURE_CANDIDATES, ("future_candidates.jsonl",), Runner.sample, seed=7, model=lookahead_model,
          inputs=(StageName.prompts,), after=LOOKAHEAD, when=_future),
    Stage(FUTURE_JUDGE, ("future_judgments.jsonl",), Runner.judge, seed=8, model=Role.judge,
          inputs=(FUTURE_CANDIDATES,), after=FUTURE_CANDIDATES, when=_future),
)


@dataclass
class Temporal(Variant):
    """Rejected from M1 (anchored), chosen from a look-ahead model (future)."""

    name: str = "temporal"
    anchored_rejection: bool = field(default=True, metadata={"help": "Rejected responses come from M1."})
    future_chosen: bool = field(
        default=True, metadata={"help": "Chosen responses come from a look-ahead model one step ahead."}
    )

    stages = STAGES

    def validate(self, cfg: Config) -> None:
        if cfg.update.method is not UpdateMethod.dpo:
            raise ConfigError("variant=temporal shapes both sides of a preference pair: it needs update=dpo.")
        if not (self.anchored_rejection or self.future_chosen):
            raise ConfigError("variant=temporal with both 'variant.anchored_rejection' and "
                              "'variant.future_chosen' false is variant=base.")

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int, future: bool = True) -> tuple[list[dict], dict]:
        """`future=False` gives the draft pairs, which train the look-ahead model before the future
        candidates exist."""
        chosen = (FUTURE_CANDIDATES, FUTURE_JUDGE) if self.future_chosen and future else JUDGED
        rejected = (ANCHOR_CANDIDATES, ANCHOR_JUDGE) if self.anchored_rejection else JUDGED
        return self.best_vs_worst(cfg, rd, t, chosen_from=chosen, rejected_from=rejected)
