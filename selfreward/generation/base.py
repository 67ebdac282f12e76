"""The generation interface both backends implement.

Stages hand a backend fully rendered prompt strings (chat template already applied) and get text
back, so both backends see identical inputs and stop at the tokenizer's EOS.

Every prompt of a sampling call draws from a random stream of its own, seeded from the call's seed
and the prompt's place in the call (`request_seeds`). A prompt's samples therefore do not depend on
which other prompts share its batch, its chunk or its data-parallel rank, two prompts never share
their draws, and a resumed chunk draws what it drew before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_new_tokens: int
    n: int = 1
    seed: int = 0
    # One seed per prompt; None derives them from `seed` (see `request_seeds`).
    seeds: tuple[int, ...] | None = None


def request_seeds(sampling: Sampling, count: int) -> list[int]:
    """The seed of each of `count` prompts: `sampling.seeds`, or a hash of (seed, prompt index)."""
    if sampling.seeds is not None:
        if len(sampling.seeds) != count:
            raise ValueError(f"{len(sampling.seeds)} seeds for {count} prompts")
        return list(sampling.seeds)
    return [derive_seed(sampling.seed, i) for i in range(count)]


def derive_seed(seed: int, index: int) -> int:
    """A 31-bit seed for stream `index` under `seed`: well mixed, the same on every machine."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") >> 1


class Generator(Protocol):
    tokenizer: object

    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """`sampling.n` completions per prompt, in prompt order, special tokens stripped."""

    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        """For each prompt, the probability of each of `token_ids` as the next token."""
