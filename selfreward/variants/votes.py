"""Majority votes over a prompt's N sampled answers: each candidate's final answer is extracted with
`variant.answer_pattern` (a regex whose first group is the answer; null: the whole stripped
response) and the answers are counted. A candidate with no extractable answer casts no vote. The
testbed's majority-of-N accuracy and the vote-ranked variant both count this way.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict


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
