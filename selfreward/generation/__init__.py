"""One generation interface, two backends (HF `generate`, vLLM).

Stages hand a backend fully rendered prompt strings (chat template already applied) and get text
back, so both backends see identical inputs and stop at the tokenizer's EOS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from selfreward.config import Backend, Config


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_new_tokens: int
    n: int = 1
    seed: int = 0


class Generator(Protocol):
    tokenizer: object

    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """`sampling.n` completions per prompt, in prompt order, special tokens stripped."""

    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        """For each prompt, the probability of each of `token_ids` as the next token."""


def distributed() -> bool:
    """Whether this process is one of several started by `accelerate launch` / torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def load_generator(cfg: Config, model_path: str) -> Generator:
    if cfg.backend is Backend.vllm:
        from selfreward.generation.vllm import VLLMGenerator

        return VLLMGenerator(model_path, cfg)
    if distributed():
        from selfreward.generation.parallel import DataParallelGenerator

        return DataParallelGenerator(cfg, model_path)
    from selfreward.generation.hf import HFGenerator

    return HFGenerator(model_path, cfg)
