"""The random-reward floor: each candidate's score is a uniform random number drawn from the round's
seed; nothing else changes. Random rewards have produced gains on some models (arXiv 2506.10947), so
a gain this arm also gets is not a self-rewarding gain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfreward.generation.base import Generator, derive_seed
from selfreward.judge import scored, with_ids
from selfreward.schema import JudgeConfig
from selfreward.variants.base import Variant


def random_scores(cfg: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
    """Each candidate's score is uniform on [0, max_score], drawn from its own stream of the chunk's
    seed (no model, no text): whatever this trains is not self-rewarding."""
    draws = [random.Random(derive_seed(seed, i)).uniform(0, cfg.max_score) for i in range(len(candidates))]
    return with_ids(candidates, scored(cfg, draws))


@dataclass
class RandomReward(Variant):
    """Uniform random scores: the floor every gain is read against."""

    name: str = "random"
    judge_model = False
    label = "floor: random rewards"

    def judge(self, generator: Generator | None, judge: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
        return random_scores(judge, candidates, seed)
