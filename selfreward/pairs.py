"""Stage 4, refine: turn judged candidates into training data.

DPO: per prompt, chosen = highest score, rejected = lowest among the responses whose text differs
from the chosen one (ties go to the lowest candidate_id). Two identical texts can score differently
(sampled judgments, or float noise between batches) but make a pair with no gradient. A prompt is
dropped when fewer than two of its candidates have a parsed score, when every response reads the
same, when all its scores are equal, or when best - worst < min_margin. Variants change where each side comes from
(`rejected_from`), how the two are picked (`select`), or filter the result (`selfreward.variants`).
SFT (I-SHEEP style filtering): every candidate whose every named score is >= its threshold.

Length-aware picks, since self-judges reward length and DPO on best-vs-worst pairs then teaches
"longer is better":
- The window (as in NeMo-Aligner's self-rewarding trainer, `variant.rho`, which any variant may set):
  the pair is picked only among candidates whose token length lies within rho * L of L, the length of
  the shortest top-scored candidate of the prompt. rho is set per round (the last value repeats):
  small rho forbids length gaps, large rho is the base method.
- Length control (Meta-Rewarding, arXiv 2407.19594): chosen is the shortest candidate whose score is
  within rho_lc of the top of the prompt's score range (score >= S_max - rho_lc * (S_max - S_min)),
  rejected the lowest-scored. rho_lc = 0 is the base rule. Inside a window, it picks among the
  window's candidates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable

from selfreward.text import token_counts

Scored = tuple[float, int, dict]  # (score, candidate_id, candidate record)
# (candidates of one prompt that may be chosen, those that may be rejected) -> (chosen, rejected);
# rejected is None when every candidate that may be rejected has the chosen one's text.
Select = Callable[[list[Scored], list[Scored]], tuple[Scored, Scored | None]]
Lengths = dict[tuple[str, int], int]


def score_index(judgments: list[dict]) -> dict[tuple[str, int], float | None]:
    """(prompt_id, candidate_id) -> the candidate's score (None when no judgment parsed)."""
    return {(j["prompt_id"], j["candidate_id"]): j["score"] for j in judgments}


def scored_by_prompt(candidates: list[dict], judgments: list[dict]) -> dict[str, list[Scored]]:
    score = score_index(judgments)
    groups: dict[str, list[Scored]] = defaultdict(list)
    for c in candidates:
        s = score.get((c["prompt_id"], c["candidate_id"]))
        if s is not None:
            groups[c["prompt_id"]].append((s, c["candidate_id"], c))
    return groups


def best_and_worst(chosen_pool: list[Scored], rejected_pool: list[Scored]) -> tuple[Scored, Scored | None]:
    best = min(chosen_pool, key=lambda x: (-x[0], x[1]))
    distinct = [x for x in rejected_pool if x[2]["response"] != best[2]["response"]]
    if not distinct:  # a pool of the best alone is a tie; of copies of its text, no pair
        return best, best if rejected_pool == [best] else None
    return best, min(distinct, key=lambda x: (x[0], x[1]))


def build_pairs(
    candidates: list[dict],
    judgments: list[dict],
    min_margin: float = 0.0,
    *,
    rejected_from: tuple[list[dict], list[dict]] | None = None,
    select: Select = best_and_worst,
) -> tuple[list[dict], dict]:
    """Return ([{prompt_id, prompt, chosen, rejected, score_chosen, score_rejected, chosen_id,
    rejected_id, kind}], drop counts). Chosen comes from `candidates`, rejected from `rejected_from`
    (another model's candidates and their judgments) or from the same candidates."""
    chosen_groups = scored_by_prompt(candidates, judgments)
    rejected_groups = scored_by_prompt(*rejected_from) if rejected_from else chosen_groups
    drops = Counter(dropped_unscored=len({c["prompt_id"] for c in candidates} - chosen_groups.keys()))
    pairs = []
    for prompt_id, pool in chosen_groups.items():
        others = rejected_groups.get(prompt_id, [])
        if not others or (rejected_from is None and len(pool) < 2):
            drops["dropped_too_few_scores"] += 1
            continue
        best, worst = select(pool, others)
        if worst is None:
            drops["dropped_same_text"] += 1
            continue
        if best[0] <= worst[0]:  # below: only when the two sides come from different models
            drops["dropped_tie" if best[0] == worst[0] else "dropped_chosen_not_better"] += 1
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
                "chosen_id": best[1],
                "rejected_id": worst[1],
                "kind": "response",
            }
        )
    return pairs, dict(drops)


def build_sft(candidates: list[dict], judgments: list[dict], thresholds: dict[str, float]) -> list[dict]:
    """Return [{prompt_id, prompt, response, score, named_scores, candidate_id}] for the candidates whose
    every named score (`named_scores`; one "Score" in the default template) is >= its threshold."""
    named = {(j["prompt_id"], j["candidate_id"]): j.get("named_scores") or {"Score": j["score"]} for j in judgments}
    groups = scored_by_prompt(candidates, judgments)
    rows = []
    for pid, scored in groups.items():
        for s, cid, c in sorted(scored, key=lambda x: x[1]):
            scores = named[(pid, cid)]
            if all(scores.get(k) is not None and scores[k] >= v for k, v in thresholds.items()):
                rows.append({"prompt_id": pid, "prompt": c["prompt"], "response": c["response"], "score": s,
                             "named_scores": scores, "candidate_id": cid})
    return rows


def unflipped(pair: dict) -> dict:
    """A pair as the judge ordered it (what its precision is measured on), trained swapped (`flipped`) or not."""
    return {**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]} if pair.get("flipped") else pair


def token_lengths(tokenizer, candidates: list[dict]) -> Lengths:
    counts = token_counts(tokenizer, [c["response"] for c in candidates])
    return {(c["prompt_id"], c["candidate_id"]): n for c, n in zip(candidates, counts)}


def _window(scored: list[Scored], lengths: Lengths, rho: float) -> list[Scored]:
    size = {x[1]: lengths[(x[2]["prompt_id"], x[1])] for x in scored}
    top = max(s for s, _, _ in scored)
    shortest = min(size[cid] for s, cid, _ in scored if s == top)
    return [x for x in scored if abs(size[x[1]] - shortest) <= rho * shortest]


def windowed_select(lengths: Lengths, rho: float, pick: Select = best_and_worst) -> Select:
    def select(pool: list[Scored], _same_pool: list[Scored]) -> tuple[Scored, Scored | None]:
        inside = _window(pool, lengths, rho)
        return pick(inside, inside)

    return select


def controlled_select(lengths: Lengths, rho_lc: float) -> Select:
    """Meta-Rewarding's length control: the shortest near-top candidate against the worst."""
    def select(pool: list[Scored], rejected_pool: list[Scored]) -> tuple[Scored, Scored | None]:
        top, bottom = max(x[0] for x in pool), min(x[0] for x in pool)
        near_top = [x for x in pool if x[0] >= top - rho_lc * (top - bottom)]
        shortest = min(near_top, key=lambda x: (lengths[(x[2]["prompt_id"], x[1])], -x[0], x[1]))
        return best_and_worst([shortest], rejected_pool)

    return select


def within_window(rows: list[dict], lengths: Lengths, rho: float) -> list[dict]:
    """SFT: keep the selected responses of each prompt whose length is within the window around the
    shortest of its top-scored selected responses."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append((r["score"], r["candidate_id"], r))
    keep = {id(x[2]) for scored in groups.values() for x in _window(scored, lengths, rho)}
    return [r for r in rows if id(r) in keep]
