"""Self-Consistency Preference Optimization (ScPO, arXiv 2411.04109): no judge, the model's own
majority is the label.

Each candidate's final answer is extracted with `variant.answer_pattern` (a regex whose first group
is the answer; null: the whole stripped response) and the answers of a prompt's N candidates are
counted. Chosen is a candidate with the most-voted answer, rejected one with the least-voted answer;
each pair records its vote margin, (top votes - bottom votes) / N. A prompt whose top answer has less
than `variant.min_vote_share` of the votes is dropped (the model is not consistent enough there to
trust its majority), as is a pair whose margin is below `variant.min_vote_margin`: TRL's DPO loss
takes no per-pair weight, so the paper's margin weighting becomes this filter. A candidate with no
extractable answer casts no vote and is never picked.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from selfreward.schema import VariantConfig


def extract(response: str, pattern: str | None) -> str | None:
    if pattern is None:
        return response.strip() or None
    found = re.search(pattern, response)
    return found.group(1).strip() if found else None


def tally(candidates: list[dict], pattern: str | None) -> dict[str, dict]:
    """prompt_id -> {"n": number of candidates, "answered": [(candidate, answer)], "votes": Counter of
    answers, "first": the first candidate giving each answer}, in prompt order."""
    out: dict[str, dict] = defaultdict(lambda: {"n": 0, "answered": [], "votes": Counter(), "first": {}})
    for c in candidates:
        group = out[c["prompt_id"]]
        group["n"] += 1
        answer = extract(c["response"], pattern)
        if answer is not None:
            group["answered"].append((c, answer))
            group["votes"][answer] += 1
            group["first"].setdefault(answer, c)
    return dict(out)


def majority(group: dict) -> tuple[str, int] | None:
    """The most-voted answer and its votes (ties: the answer sampled first), or None when none parsed."""
    if not group["votes"]:
        return None
    top = max(group["votes"].values())
    answer = next(a for a in group["first"] if group["votes"][a] == top)
    return answer, top


def vote_pairs(candidates: list[dict], v: VariantConfig) -> tuple[list[dict], dict]:
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


def majority_examples(candidates: list[dict], v: VariantConfig) -> tuple[list[dict], dict]:
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
