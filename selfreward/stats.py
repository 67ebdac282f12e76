"""Small statistics for the evaluation stage, written out so each can be checked by hand."""

from __future__ import annotations

import math
from collections import defaultdict


def _ranks(xs: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def spearman(xs: list[float], ys: list[float]) -> float | None:
    return _pearson(_ranks(xs), _ranks(ys)) if len(xs) > 1 else None


def kendall_tau(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-b, which corrects for ties (judge scores tie often)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else None


def pair_outcome(better: float | None, worse: float | None) -> float:
    """One judged pair whose right order is known: 1 when the judge puts the better response above,
    half for a tie, 0 otherwise; a pair with an unparsed judgment (None) on either side counts as wrong,
    so that a judge cannot score well by failing to answer."""
    if better is None or worse is None:
        return 0.0
    return 1.0 if better > worse else 0.5 if better == worse else 0.0


def pairwise_accuracy(groups: list[str], judge: list[float | None],
                      reference: list[float]) -> tuple[float | None, int]:
    """Over all pairs of responses to the same instruction whose reference scores differ: the share
    the judge orders the same way (`pair_outcome`: a tie counts half, an unparsed judgment as wrong).
    Returns (accuracy, number of pairs)."""
    by_group = defaultdict(list)
    for g, j, r in zip(groups, judge, reference):
        by_group[g].append((j, r))
    total = n = 0
    for items in by_group.values():
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                (ja, ra), (jb, rb) = items[a], items[b]
                if ra == rb:
                    continue
                n += 1
                total += pair_outcome(ja, jb) if ra > rb else pair_outcome(jb, ja)
    return (total / n if n else None), n


def swapped_outcome(new_first: tuple[float, float], new_second: tuple[float, float]) -> float:
    """One comparison judged in both orders. `new_first` = (P(first), P(second)) with the new response
    shown first, `new_second` with it shown second. Win (1) or loss (0) only when both orders agree; otherwise the judge
    followed the position, not the content, and it is a tie (0.5)."""
    wins_first = new_first[0] > new_first[1]
    wins_second = new_second[1] > new_second[0]
    loses_first = new_first[0] < new_first[1]
    loses_second = new_second[1] < new_second[0]
    if wins_first and wins_second:
        return 1.0
    if loses_first and loses_second:
        return 0.0
    return 0.5


def win_rate(outcomes: list[float]) -> dict:
    """Wins + half the ties over all comparisons, with `decided` (the comparisons both orders agreed
    on) beside it. When none was decided the evaluator only followed positions: no rate (None), not
    the 0.5 that all ties would give."""
    decided = outcomes.count(1.0) + outcomes.count(0.0)
    return {
        "win_rate": sum(outcomes) / len(outcomes) if decided else None,
        "wins": outcomes.count(1.0),
        "ties": outcomes.count(0.5),
        "losses": outcomes.count(0.0),
        "decided": decided,
        "n": len(outcomes),
    }


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams over the whole set (word level): 1.0 = no repetition."""
    grams = [tuple(w[i : i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None
