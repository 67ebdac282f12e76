"""Length-windowed pairs (as in NeMo-Aligner's self-rewarding trainer): chosen and rejected are the
best and worst candidates whose token length lies within rho (relative) of the shortest top-scored
candidate, so DPO cannot learn "longer is better" (`selfreward.pairs` has the window). Every variant
may set `variant.rho`; this one is the base round with a window it requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from selfreward.errors import ConfigError
from selfreward.schema import Config
from selfreward.variants.base import Variant


@dataclass
class Length(Variant):
    """Best vs worst inside a length window around the shortest top-scored candidate."""

    name: str = "length"
    rho: list[float] = field(default_factory=lambda: [0.5], metadata={
        "help": "Length window half-width relative to that length, per round (the last repeats)."})

    def validate(self, cfg: Config) -> None:
        if not self.rho:
            raise ConfigError("variant=length needs a length window: 'variant.rho' must not be empty.")
