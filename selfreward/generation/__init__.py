"""Generation backends behind one interface (`base.Generator`): HF `generate`, data-parallel HF
over torchrun ranks, and vLLM. `load_generator` picks one for the run's config."""

from __future__ import annotations

import os

from selfreward.generation.base import Generator
from selfreward.generation.parallel import DataParallelGenerator
from selfreward.schema import Backend, Config


def distributed() -> bool:
    """Whether this process is one of several started by `accelerate launch` / torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def load_generator(cfg: Config, model_path: str) -> Generator:
    # Each backend imports its heavy libraries (torch, vllm: an optional extra) only where it generates.
    if cfg.backend is Backend.vllm:
        from selfreward.generation.vllm import VLLMGenerator

        return VLLMGenerator(model_path, cfg)
    if distributed():
        return DataParallelGenerator(cfg, model_path)
    from selfreward.generation.hf import HFGenerator  # torch

    return HFGenerator(model_path, cfg)
