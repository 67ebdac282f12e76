"""Stage 4, refine: turn judged candidates into training data.

DPO: per prompt, chosen = highest score, rejected = lowest (ties go to the lowest candidate_id).
A prompt is dropped when fewer than two of its candidates have a parsed score, when all its scores
are equal, or when best - worst < min_margin.
SFT (I-SHEEP style filtering): every candidate whose score is >= threshold.
"""

from __future__ import annotations

from collections import Counter, defaultdict


def _scored_by_prompt(candidates: list[dict], judgments: list[dict]) -> dict[str, list[tuple[float, int, dict]]]:
    score = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in judgments}
    groups: dict[str, list[tuple[float, int, dict]]] = defaultdict(list)
    for c in candidates:
        s = score.get((c["prompt_id"], c["candidate_id"]))
        if s is not None:
            groups[c["prompt_id"]].append((s, c["candidate_id"], c))
    return groups


def build_pairs(candidates: list[dict], judgments: list[dict], min_margin: float = 0.0) -> tuple[list[dict], dict]:
    """Return ([{prompt_id, prompt, chosen, rejected, score_chosen, score_rejected}], drop counts)."""
    groups = _scored_by_prompt(candidates, judgments)
    drops = Counter(dropped_unscored=len({c["prompt_id"] for c in candidates} - groups.keys()))
    pairs = []
    for prompt_id, scored in groups.items():
        if len(scored) < 2:
            drops["dropped_too_few_scores"] += 1
            continue
        best = min(scored, key=lambda x: (-x[0], x[1]))
        worst = min(scored, key=lambda x: (x[0], x[1]))
        if best[0] == worst[0]:
            drops["dropped_tie"] += 1
            continue
        if best[0] - worst[0] < min_margin:
            drops["dropped_margin"] += 1
            continue
        pairs.append(
            {
                "prompt_id": prompt_id,
                "prompt": best[2]["prompt"],
                "chosen": best[2]["response"],
                "rejected": worst[2]["response"],
                "score_chosen": best[0],
                "score_rejected": worst[0],
            }
        )
    return pairs, dict(drops)


def build_sft(candidates: list[dict], judgments: list[dict], threshold: float) -> list[dict]:
    """Return [{prompt_id, prompt, response, score}] for candidates scoring >= threshold."""
    groups = _scored_by_prompt(candidates, judgments)
    return [
        {"prompt_id": pid, "prompt": c["prompt"], "response": c["response"], "score": s}
        for pid, scored in groups.items()
        for s, _, c in sorted(scored, key=lambda x: x[1])
        if s >= threshold
    ]
