"""vLLM backend (optional extra `selfreward[vllm]`, GPU only), imported only when `backend=vllm`.

Runs in the generation worker process, never inside the DeepSpeed trainer, so no weights are synced
between engines: each round's worker simply loads the checkpoint the previous update saved.
"""

from __future__ import annotations

import math

from selfreward.errors import ConfigError
from selfreward.generation.base import Sampling, request_seeds
from selfreward.schema import Config
from selfreward.templates import ensure_chat_template

# Enough top log-probs that the score tokens of a trained judge are among them.
TOP_LOGPROBS = 20


class VLLMGenerator:
    def __init__(self, model_path: str, cfg: Config):
        try:
            import vllm
        except ImportError:
            raise ConfigError(
                "backend=vllm needs vLLM: pip install 'selfreward[vllm]' (GPU machine), or use backend=hf."
            ) from None
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model_path,
            tensor_parallel_size=cfg.vllm.tensor_parallel_size,
            gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
            max_model_len=cfg.vllm.max_model_len,
            enable_prefix_caching=cfg.vllm.enable_prefix_caching,
            seed=cfg.seed,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        self.tokenizer = ensure_chat_template(self.llm.get_tokenizer(), cfg.model.chat_template)

    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        # One SamplingParams per prompt, each with the prompt's own seed (see generation.base).
        params = [
            self._vllm.SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                max_tokens=sampling.max_new_tokens,
                seed=seed,
                skip_special_tokens=True,
                # vLLM stops at the generation config's EOS; the HF backend also stops at the tokenizer's
                stop_token_ids=[self.tokenizer.eos_token_id],
            )
            for seed in request_seeds(sampling, len(prompts))
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [[c.text.strip() for c in o.outputs] for o in outputs]

    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        params = self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        result = []
        for o in outputs:
            top = o.outputs[0].logprobs[0]  # {token_id: Logprob} for the first generated position
            result.append([math.exp(top[t].logprob) if t in top else 0.0 for t in token_ids])
        return result
