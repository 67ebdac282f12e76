"""Seed-anchored prompts: a share of each round's prompts (`prompts.seed_share`, which the prompts
stage reads under any variant) is drawn from the seed set instead of being written by M_t, against
drift into the model's own narrow prompt distribution (the self-evolution survey's model-collapse
concern, arXiv 2404.14387). This variant is the base round that requires that share.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfreward.errors import ConfigError
from selfreward.schema import Config
from selfreward.variants.base import Variant


@dataclass
class SeedAnchored(Variant):
    """Mixes seed prompts into each round's prompt set."""

    name: str = "seed_anchored"

    def validate(self, cfg: Config) -> None:
        if cfg.prompts.seed_share == 0:
            raise ConfigError("variant=seed_anchored needs 'prompts.seed_share' > 0.")
