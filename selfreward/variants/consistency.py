"""Consistency-filtered pairs (after SCIR, arXiv 2502.08922): a second internal judge (by default the
logprob expected score) scores every candidate too; a pair is kept only when both judges order it the
same way, and an SFT example only when the second judge's score clears the threshold as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.pairs import score_index
from selfreward.round import Role, Runner, Stage, StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeConfig, JudgeMethod
from selfreward.variants.base import Variant

SECOND_JUDGE = "second_judge"


def second_judge_of(cfg: Config) -> JudgeConfig:
    """The second judge: the round's judge with another method or template."""
    v = cfg.variant
    return replace(cfg.judge, method=v.second_judge, template=v.second_template or cfg.judge.template)


def agreeing(pairs: list[dict], second: list[dict]) -> tuple[list[dict], int]:
    """Keep the pairs the second judge also orders chosen > rejected (a pair it cannot score is dropped)."""
    score = score_index(second)
    kept = []
    for p in pairs:
        c, r = score.get((p["prompt_id"], p["chosen_id"])), score.get((p["prompt_id"], p["rejected_id"]))
        if c is not None and r is not None and c > r:
            kept.append({**p, "second_score_chosen": c, "second_score_rejected": r})
    return kept, len(pairs) - len(kept)


@dataclass
class Consistency(Variant):
    """Drops pairs a second judge orders differently."""

    name: str = "consistency"
    second_judge: JudgeMethod = field(default=JudgeMethod.logprob, metadata={"help": "The second judge's method."})
    second_template: Optional[str] = field(
        default=None, metadata={"help": "The second judge's template; null = judge.template."}
    )

    stages = (Stage(SECOND_JUDGE, ("judgments_second.jsonl",), Runner.judge, seed=3, model=Role.judge,
                    inputs=(StageName.candidates,), settings=("variant.second_judge", "variant.second_template"),
                    after=StageName.judge, judge=second_judge_of),)

    def validate(self, cfg: Config) -> None:
        if self.second_judge is cfg.judge.method and (self.second_template or cfg.judge.template) == cfg.judge.template:
            raise ConfigError("variant=consistency needs a second judge that differs from the first: set "
                              "'variant.second_judge' (method) or 'variant.second_template'.")

    def templates(self, cfg: Config) -> list[tuple[str, str]]:
        return [("variant.second_template", self.second_template or cfg.judge.template)]

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        pairs, drops = self.best_vs_worst(cfg, rd, t)
        pairs, drops["dropped_judges_disagree"] = agreeing(pairs, read_jsonl(rd.output(t, SECOND_JUDGE)))
        return pairs, drops

    def sft_examples(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        rows, drops = self.above_threshold(cfg, rd, t)
        second = score_index(read_jsonl(rd.output(t, SECOND_JUDGE)))
        both = [(r, second.get((r["prompt_id"], r["candidate_id"]))) for r in rows]
        kept = [r for r, s in both if s is not None and s >= cfg.pairs.sft_threshold]
        drops["dropped_judges_disagree"] = len(rows) - len(kept)
        return self.in_length_window(cfg, rd, t, kept, drops), drops
