"""Length-controlled pairs (as in NeMo-Aligner's self-rewarding trainer).

Self-judges reward length, and DPO on best-vs-worst pairs then teaches "longer is better". Here the
pair is picked only among candidates whose token length lies within a window around the shortest
top-scored candidate of the prompt, L: |length - L| <= rho * L. rho is set per round
(`variant.rho`, the last value repeats): small rho forbids length gaps, large rho is the base
method.
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


def windowed_select(lengths: Lengths, rho: float) -> Select:
    def select(pool: list[Scored], _same_pool: list[Scored]) -> tuple[Scored, Scored]:
        inside = _window(pool, lengths, rho)
        return best_and_worst(inside, inside)

    return select


def within_window(rows: list[dict], lengths: Lengths, rho: float) -> list[dict]:
    """SFT: keep the selected responses of each prompt whose length is within the window around the
    shortest of its top-scored selected responses."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append((r["score"], r["candidate_id"], r))
    keep = {id(x[2]) for scored in groups.values() for x in _window(scored, lengths, rho)}
    return [r for r in rows if id(r) in keep]
