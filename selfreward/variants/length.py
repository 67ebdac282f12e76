"""Length-aware pair rules: self-judges reward length, and DPO on best-vs-worst pairs then teaches
"longer is better".

- The window (as in NeMo-Aligner's self-rewarding trainer, `variant.rho`; variant=length, or any
  variant that sets it): the pair is picked only among candidates whose token length lies within
  rho * L of L, the length of the shortest top-scored candidate of the prompt. rho is set per round
  (the last value repeats): small rho forbids length gaps, large rho is the base method.
- Length control (Meta-Rewarding, arXiv 2407.19594, `variant.length_control`; variant=meta): chosen
  is the shortest candidate whose score is within rho_lc of the top of the prompt's score range
  (score >= S_max - rho_lc * (S_max - S_min)), rejected the lowest-scored. rho_lc = 0 is the base
  rule. Inside a window, it picks among the window's candidates.
"""

from __future__ import annotations

from collections import defaultdict

from selfreward.pairs import Scored, Select, best_and_worst
from selfreward.schema import Config
from selfreward.text import token_counts

Lengths = dict[tuple[str, int], int]


def rho(cfg: Config, t: int) -> float:
    values = cfg.variant.rho
    return values[min(t, len(values)) - 1]


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
