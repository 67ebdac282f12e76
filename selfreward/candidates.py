"""Stage 2, acquire: N sampled responses per prompt, in one batched generate call."""

from __future__ import annotations

from selfreward.generation.base import Generator, Sampling
from selfreward.schema import GenerationConfig
from selfreward.templates import chat_prompt


def sample_candidates(generator: Generator, cfg: GenerationConfig, prompts: list[dict], seed: int) -> list[dict]:
    """Return [{prompt_id, prompt, candidate_id, response}], candidate_id 0..N-1 per prompt."""
    rendered = [chat_prompt(generator.tokenizer, p["prompt"]) for p in prompts]
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, n=cfg.num_candidates, seed=seed)
    responses = generator.generate(rendered, sampling, desc="candidates")
    return [
        {"prompt_id": p["id"], "prompt": p["prompt"], "candidate_id": j, "response": r}
        for p, rs in zip(prompts, responses)
        for j, r in enumerate(rs)
    ]
