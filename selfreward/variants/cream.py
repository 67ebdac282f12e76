"""Consistency-Regularized Self-Rewarding (CREAM, arXiv 2410.12735).

From round 2 on, the previous model M_{t-1} also judges the round's candidates (stage
`previous_judge`). Per prompt, the Kendall tau-b between M_t's and M_{t-1}'s scores says how far the
two rankings agree; C = mean over prompts of (tau + 1) / 2. The update then trains on
C * DPO(chosen, rejected) + (1 - C) * DPO(rejected, chosen): the less the judge agrees with its
previous self, the less its pairs are trusted. That is conservative DPO with label smoothing 1 - C,
but TRL 1.x's sigmoid DPO loss no longer reads `label_smoothing` (only its robust, EXO and AOT losses
do, each differently), so passing it would silently change nothing. selfreward keeps TRL's loss as it
is and smooths the labels in the data: each of the round's pairs is trained with chosen and rejected
swapped (`flipped: true`) with probability 1 - C, drawn independently from the round's seed, which
gives the same objective in expectation over the draws. (A fixed count round((1 - C) * n) would not:
at C = 0.99 and a dozen pairs it flips none, ever.) C, 1 - C and the number flipped are recorded in the pairs' manifest entry and in
`metrics.json`.

The paper ranks with the DPO implicit reward (log pi_t - log pi_{t-1}); selfreward ranks with the
judge score of each model, the signal the rest of the round uses. In round 1 there is no judged
previous model: C = 1, no smoothing. With update=sft, a prompt's kept responses are dropped when
the two rankings disagree more than they agree on it ((tau + 1) / 2 < 0.5), selfreward's analogue.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from statistics import mean

from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.round import Role, Runner, Stage, StageName, stage_seed
from selfreward.rundir import RunDir
from selfreward.schema import Config
from selfreward.stats import kendall_tau
from selfreward.variants.base import Variant

PREVIOUS_JUDGE = "previous_judge"


def _per_prompt(judgments: list[dict], previous: list[dict]) -> dict[str, float]:
    """prompt_id -> (tau + 1) / 2 over the candidates both models scored (prompts without a tau left out)."""
    before = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in previous}
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for j in judgments:
        old = before.get((j["prompt_id"], j["candidate_id"]))
        if j["score"] is not None and old is not None:
            pairs[j["prompt_id"]].append((j["score"], old))
    out = {}
    for prompt_id, both in pairs.items():
        tau = kendall_tau([a for a, _ in both], [b for _, b in both]) if len(both) > 1 else None
        if tau is not None:
            out[prompt_id] = (tau + 1) / 2
    return out


def smoothing(judgments: list[dict], previous: list[dict] | None) -> dict:
    """{"cream_consistency": C, "label_smoothing": 1 - C} for the pairs' manifest entry."""
    agreement = _per_prompt(judgments, previous) if previous is not None else {}
    c = mean(agreement.values()) if agreement else 1.0
    return {"cream_consistency": round(c, 4), "label_smoothing": round(1 - c, 4),
            "cream_prompts": len(agreement)}


def smooth_labels(pairs: list[dict], label_smoothing: float, seed: int) -> tuple[list[dict], int]:
    """Swap chosen and rejected in each pair with probability `label_smoothing`, drawn with `seed`."""
    rng = random.Random(seed)
    flip = {i for i in range(len(pairs)) if rng.random() < label_smoothing}
    out = [{**p, "chosen": p["rejected"], "rejected": p["chosen"], "flipped": True} if i in flip else p
           for i, p in enumerate(pairs)]
    return out, len(flip)


def agreeing_prompts(rows: list[dict], judgments: list[dict], previous: list[dict] | None) -> tuple[list[dict], int]:
    """SFT: the rows of prompts whose two rankings agree at least as much as they disagree."""
    if previous is None:
        return rows, 0
    agreement = _per_prompt(judgments, previous)
    kept = [r for r in rows if agreement.get(r["prompt_id"], 1.0) >= 0.5]
    return kept, len(rows) - len(kept)


def _from_round_2(cfg: Config, t: int) -> bool:
    return t >= 2  # round 1's M_t has no judged previous model


@dataclass
class Cream(Variant):
    """Labels smoothed by 1 - C, C the agreement with M_{t-1}'s ranking."""

    name: str = "cream"

    stages = (Stage(PREVIOUS_JUDGE, ("judgments_previous.jsonl",), Runner.judge, seed=10, model=Role.previous,
                    inputs=(StageName.candidates,), after=StageName.judge, when=_from_round_2),)
    rule_keys = (*Variant.rule_keys, "cream_consistency", "label_smoothing", "cream_flipped")

    def validate(self, cfg: Config) -> None:
        if cfg.judge.model:
            raise ConfigError("variant=cream compares M_t's judgments with M_{t-1}'s: it needs judge.model=null "
                              f"(got {cfg.judge.model!r}).")

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        pairs, drops = self.best_vs_worst(cfg, rd, t)
        drops.update(smoothing(*rankings(rd, t)))
        pairs, drops["cream_flipped"] = smooth_labels(pairs, drops["label_smoothing"],
                                                      stage_seed(cfg, t, StageName.pairs))
        return pairs, drops

    def sft_examples(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        rows, drops = super().sft_examples(cfg, rd, t)
        rows, drops["dropped_rankings_disagree"] = agreeing_prompts(rows, *rankings(rd, t))
        return rows, drops


def rankings(rd: RunDir, t: int) -> tuple[list[dict], list[dict] | None]:
    """This round's judgments, and M_{t-1}'s of the same candidates (None in round 1)."""
    previous = read_jsonl(rd.output(t, PREVIOUS_JUDGE)) if t >= 2 else None
    return read_jsonl(rd.output(t, StageName.judge)), previous
