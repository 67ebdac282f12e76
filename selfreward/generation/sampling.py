"""Seeded temperature and top-p sampling, one random stream per row, cheap per decoding step.

`generate(do_sample=True)` draws every row from one global stream, so a row's sample depends on the
rows drawn before it: on its batch, chunk and rank. Here row r's k-th token uses the k-th number of
stream r (inverse-CDF sampling). The HF backend's decode loop calls `choose`; as a `generate` logits
processor it returns scores that leave only the chosen token, so greedy decoding emits it.

Top-p needs each row's tokens in order of probability, but only as far as the nucleus reaches: a
`topk` of a few dozen tokens usually covers it, where sorting the whole 49k vocabulary of a real
model cost 45 ms a step for 32 rows on 2 CPU cores (more than the model's own step). A row whose
nucleus does not fit is ranked again with a larger k, and in the end by a full sort, so the result is
exactly that of a stable descending sort of the whole row: ties (frequent in bf16 logits) ranked in
token-id order.
"""

from __future__ import annotations

import random

import torch
from transformers import LogitsProcessor

# How far each row is ranked before falling back to more: most steps of a chat model fit in 64.
RANKS = (64, 1024)


class SeededSampling(LogitsProcessor):
    def __init__(self, row_seeds: list[int], temperature: float, top_p: float, ranks: tuple[int, ...] = RANKS):
        self.streams = [random.Random(s) for s in row_seeds]
        self.temperature, self.top_p, self.ranks = temperature, top_p, ranks

    def choose(self, scores: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """The next token of each row of `scores` (rows: which streams they are; default all), each
        drawing the next number of its own stream."""
        streams = self.streams if rows is None else [self.streams[r] for r in rows]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        u = torch.tensor([s.random() for s in streams], dtype=probs.dtype, device=probs.device)
        if self.top_p < 1.0:
            return sample_nucleus(probs, u, self.top_p, self.ranks)
        return draw(probs, None, u)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """As a `generate` logits processor: scores that leave only the chosen token possible."""
        return torch.full_like(scores, float("-inf")).scatter(-1, self.choose(scores)[:, None], 0.0)


def ranked(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k most probable tokens (values, ids), most probable first, ties in id order."""
    if k >= probs.shape[-1]:
        return probs.sort(dim=-1, descending=True, stable=True)
    values, ids = probs.topk(k, dim=-1)
    ids, by_id = ids.sort(dim=-1)  # topk leaves ties in any order: put them in id order first
    values, order = values.gather(-1, by_id).sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order)


def sample_nucleus(probs: torch.Tensor, u: torch.Tensor, top_p: float, ranks: tuple[int, ...] = RANKS):
    """One token per row from the smallest most-probable prefix whose mass reaches `top_p` (a token
    is kept while the mass ranked before it is below top_p), at the row's uniform number `u`."""
    vocab = probs.shape[-1]
    chosen = torch.empty(len(probs), dtype=torch.long, device=probs.device)
    todo = torch.arange(len(probs), device=probs.device)
    for k in (*[r for r in ranks if r < vocab], vocab):
        values, ids = ranked(probs[todo], k)
        keep = values.cumsum(-1) - values < top_p
        # Complete unless a kept token ties the k-th value: tokens of that value may lie beyond k.
        done = ~(keep & (values == values[:, -1:])).any(-1) if k < vocab else torch.ones_like(keep[:, 0])
        rows = todo[done]
        chosen[rows] = draw(values[done] * keep[done], ids[done], u[rows])
        todo = todo[~done]
        if not len(todo):
            break
    return chosen


def draw(weights: torch.Tensor, ids: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of one id per row, the CDF taken in token-id order over `weights` of `ids`
    (None: the whole vocabulary in order); a token left out has weight 0 and adds nothing to the CDF,
    so the draw is the one a CDF over the whole vocabulary gives."""
    if ids is None:
        ids = torch.arange(weights.shape[-1], device=weights.device).expand_as(weights)
    else:
        ids, by_id = ids.sort(dim=-1)
        weights = weights.gather(-1, by_id)
    cdf = weights.cumsum(-1)
    pos = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True)[:, 0]
    # u * total rounds up to total about once in 10^7 draws: take the last token with weight
    last = torch.where(weights > 0, torch.arange(weights.shape[-1], device=weights.device), -1).amax(-1)
    pos = torch.where(pos < weights.shape[-1], pos, last.clamp(min=0))
    return ids.gather(-1, pos[:, None])[:, 0]
