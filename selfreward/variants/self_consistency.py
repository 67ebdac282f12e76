"""Self-Consistency Preference Optimization (ScPO, arXiv 2411.04109): no judge, the model's own
majority is the label.

The answers of a prompt's N candidates are counted (`selfreward.variants.votes`). Chosen is a candidate
with the most-voted answer, rejected one with the least-voted answer; each pair records its vote
margin, (top votes - bottom votes) / N. A prompt whose top answer has less than
`variant.min_vote_share` of the votes is dropped (the model is not consistent enough there to trust
its majority), as is a pair whose margin is below `variant.min_vote_margin`: TRL's DPO loss takes no
per-pair weight, so the paper's margin weighting becomes this filter. A candidate with no extractable
answer is never picked. With update=sft, each prompt's majority answer is the example.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.round import StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, bounded
from selfreward.variants.base import Variant
from selfreward.variants.votes import majority, tally


def vote_pairs(candidates: list[dict], v: SelfConsistency) -> tuple[list[dict], dict]:
    """DPO pairs: most-voted answer vs least-voted answer, with their vote shares as scores."""
    pairs, drops = [], Counter()
    for prompt_id, group in tally(candidates, v.answer_pattern).items():
        drops["unparsed_answers"] += group["n"] - len(group["answered"])
        top = majority(group)
        if top is None:
            drops["dropped_unscored"] += 1
            continue
        if top[1] / group["n"] < v.min_vote_share:
            drops["dropped_vote_share"] += 1
            continue
        if len(group["votes"]) < 2:
            drops["dropped_unanimous"] += 1
            continue
        bottom_votes = min(group["votes"].values())
        bottom = next(a for a in group["first"] if group["votes"][a] == bottom_votes)
        margin = (top[1] - bottom_votes) / group["n"]
        if margin < v.min_vote_margin:
            drops["dropped_vote_margin"] += 1
            continue
        chosen, rejected = group["first"][top[0]], group["first"][bottom]
        pairs.append({
            "prompt_id": prompt_id, "prompt": chosen["prompt"], "chosen": chosen["response"],
            "rejected": rejected["response"], "score_chosen": top[1] / group["n"],
            "score_rejected": bottom_votes / group["n"], "chosen_id": chosen["candidate_id"],
            "rejected_id": rejected["candidate_id"], "vote_margin": round(margin, 4), "kind": "response",
        })
    return pairs, dict(drops)


def majority_examples(candidates: list[dict], v: SelfConsistency) -> tuple[list[dict], dict]:
    """SFT: each prompt's majority answer (one candidate per distinct text giving it), when its share
    of the votes is at least `variant.min_vote_share` and no other answer ties it."""
    rows, drops = [], Counter()
    for prompt_id, group in tally(candidates, v.answer_pattern).items():
        top = majority(group)
        tied = top is not None and list(group["votes"].values()).count(top[1]) > 1
        if top is None or tied or top[1] / group["n"] < v.min_vote_share:
            drops["dropped_no_majority" if top is None or tied else "dropped_vote_share"] += 1
            continue
        seen = set()
        for c, answer in group["answered"]:
            if answer == top[0] and c["response"] not in seen:
                seen.add(c["response"])
                rows.append({"prompt_id": prompt_id, "prompt": c["prompt"], "response": c["response"],
                             "score": top[1] / group["n"], "candidate_id": c["candidate_id"], "kind": "response"})
    return rows, dict(drops)


@dataclass
class SelfConsistency(Variant):
    """No judge: most-voted vs least-voted answer (ScPO)."""

    name: str = "self_consistency"
    min_vote_share: float = bounded(0.0, "[0, 1]", "Drop a prompt whose top answer has a smaller share.")
    min_vote_margin: float = bounded(0.0, "[0, 1]", "Keep a pair only when (top votes - bottom votes) / N is at "
                                     "least this.")

    skips = {StageName.judge: "votes rank the candidates (self_consistency)"}
    rule_keys = (*Variant.rule_keys, "unparsed_answers")

    def validate(self, cfg: Config) -> None:
        if cfg.generation.num_candidates < 2:
            raise ConfigError("variant=self_consistency counts the votes of N answers: it needs "
                              f"'generation.num_candidates' >= 2, got {cfg.generation.num_candidates}.")
        if self.answer_pattern is not None:
            try:
                groups = re.compile(self.answer_pattern).groups
            except re.error as e:
                raise ConfigError(f"'variant.answer_pattern' is not a regular expression ({e}).") from None
            if groups < 1:
                raise ConfigError(f"'variant.answer_pattern' {self.answer_pattern!r} needs a group around the "
                                  "answer, e.g. '#### (.+)'.")

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        return vote_pairs(read_jsonl(rd.output(t, StageName.candidates)), self)

    def sft_examples(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        return majority_examples(read_jsonl(rd.output(t, StageName.candidates)), self)
