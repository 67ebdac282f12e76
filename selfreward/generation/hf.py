"""HF backend: length-sorted, left-padded batches through transformers' model, bf16 where the hardware
has it, decoded by our own loop (`HFGenerator._decode`: what `generate` computes, with less repeated
work on a real model).

A model saved as a LoRA adapter (`lora.merge=false`) is loaded on its base and merged. With
`launch.generation_device_map=auto` one process spreads a model too big for one GPU over all visible
GPUs; with `launch.generation_processes>1` each rank holds a copy (see `generation.parallel`).
"""

from __future__ import annotations

import copy
import inspect

import torch
from tqdm.auto import tqdm

from selfreward.checkpoint import load_causal_lm, load_tokenizer, native_bf16
from selfreward.generation.base import Sampling, derive_seed, request_seeds
from selfreward.generation.sampling import RANKS, SeededSampling
from selfreward.profiling import timed
from selfreward.schema import Config, GenerationDtype



def generation_dtype(setting: GenerationDtype, device: str):
    if setting is GenerationDtype.auto:
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return torch.bfloat16 if setting is GenerationDtype.bf16 else torch.float32


class HFGenerator:
    def __init__(self, model_path: str, cfg: Config, device: str | None = None, progress: bool = True):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.tokenizer = load_tokenizer(model_path, cfg, padding_side="left")
        dtype = generation_dtype(cfg.generation.dtype, self.device)
        device_map = cfg.launch.generation_device_map
        with timed("load"):
            self.model = load_causal_lm(
                model_path, dtype, cfg.model.trust_remote_code, **({"device_map": device_map} if device_map else {})
            )
        if device_map:
            self.device = self.model.device  # where the inputs go: the first layer's device
        else:
            self.model.to(self.device)
        self.model.eval()
        self.batch_size = cfg.generation.batch_size
        # transformers 5 renamed forward's `past_key_values` to `cache`; older versions know only the first
        forward = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in forward else "past_key_values"
        # the last position's logits only, where the model can (remote-code models may not)
        self.last_logits = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        self.prefix_cache = cfg.generation.prefix_cache
        self.sampler_ranks = RANKS  # () ranks every row by a full sort (the benchmark's reference)
        # Stop where vLLM stops: at the tokenizer's EOS and at every EOS of the model's generation config
        # (chat models often end turns with a token the tokenizer does not call EOS).
        configured = self.model.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured]
        self.stop_ids = sorted({self.tokenizer.eos_token_id, *configured} - {None})

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        return self.tokenizer(prompts, add_special_tokens=False)["input_ids"]

    def _length_sorted(self, ids: list[list[int]], desc: str):
        """Yield the indices of each batch; sorting by length keeps padding, and wasted compute, small."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch", leave=False,
                          disable=not self.progress):
            yield order[start : start + self.batch_size]

    def _batches(self, ids: list[list[int]], desc: str):
        """Yield (indices, left-padded batch)."""
        for idx in self._length_sorted(ids, desc):
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            yield idx, batch.to(self.device)

    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        with timed("generate"):
            return self._generate(prompts, sampling, desc)

    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        with timed("score"):
            return self._next_token_probs(prompts, token_ids, desc)

    @torch.inference_mode()
    def _generate(self, prompts: list[str], sampling: Sampling, desc: str) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in prompts]
        seeds = request_seeds(sampling, len(prompts))
        ids = self._encode(prompts)
        for idx in self._length_sorted(ids, desc):
            # n rows per prompt, each drawing from its own stream; temperature 0 decodes greedily
            sampler = None
            if sampling.temperature > 0:
                rows = [derive_seed(seeds[i], k) for i in idx for k in range(sampling.n)]
                sampler = SeededSampling(rows, sampling.temperature, sampling.top_p, self.sampler_ranks)
            written = self._decode([ids[i] for i in idx], sampling.n, sampling.max_new_tokens, sampler)
            texts = self.tokenizer.batch_decode(written, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[j * sampling.n : (j + 1) * sampling.n]]
        return out

    def _decode(self, prompts: list[list[int]], n: int, max_new_tokens: int, sampler) -> list[list[int]]:
        """Decode n rows per prompt, the loop `generate` runs (the same inputs, positions and masks, so
        the same tokens), less three of its costs on a real model: a prefix every prompt shares (the
        judge's rubric) is computed once (`generation.prefix_cache`), each prompt is prefilled once and
        its cache copied to its n rows, and a row leaves the batch when it writes a stop token (the
        rest no longer wait on a finished row's padding). Returns each row's tokens, its stop token
        included."""
        logits, cache, mask, positions = self._prefill(prompts)
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits, mask, positions = (x.repeat_interleave(n, dim=0) for x in (logits, mask, positions))
        position = positions[:, -1:]
        live = torch.arange(len(logits), device=logits.device)
        written: list[list[int]] = [[] for _ in range(len(logits))]
        stops = torch.tensor(self.stop_ids, device=logits.device)
        for k in range(max_new_tokens):
            token = sampler.choose(logits, live.tolist()) if sampler else logits.float().argmax(-1)
            for row, t in zip(live.tolist(), token.tolist()):
                written[row].append(t)
            going = ~torch.isin(token, stops)
            if k == max_new_tokens - 1 or not going.any():
                break
            if not going.all():
                keep = going.nonzero()[:, 0]
                cache.batch_select_indices(keep)
                live, token, mask, position = live[keep], token[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=-1)
            position = position + 1
            step = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True,
                              **{self.cache_arg: cache})
            cache = getattr(step, "cache", None) or step.past_key_values
            logits = step.logits[:, -1]
        return written

    def _prefill(self, prompts: list[list[int]]):
        """(last-position logits, KV cache, attention mask, position ids) of left-padded prompts. With
        a shared prefix, it runs once and the tails follow it, each left-padded after the prefix
        (`prefix | pad | tail`: the mask skips the padding, the positions run on from the prefix)."""
        shared = _common_prefix(prompts) if self.prefix_cache and len(prompts) > 1 else 0
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        tails = [p[shared:] for p in prompts]
        width, pad = max(map(len, tails)), self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=self.device)
        mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=self.device)
        cached = {}
        if shared:
            step = self.model(input_ids=torch.tensor([prompts[0][:shared]], device=self.device), use_cache=True)
            cache = getattr(step, "cache", None) or step.past_key_values
            cache.batch_repeat_interleave(len(prompts))
            mask = torch.cat([mask.new_ones(len(prompts), shared), mask], dim=-1)
            cached = {self.cache_arg: cache}
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as `generate` numbers left padding
        step = self.model(input_ids=ids, attention_mask=mask, position_ids=positions[:, -width:], use_cache=True,
                          **self.last_logits, **cached)
        return step.logits[:, -1], getattr(step, "cache", None) or step.past_key_values, mask, positions

    @torch.inference_mode()
    def _next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str) -> list[list[float]]:
        ids = self._encode(prompts)
        shared = _common_prefix(ids) if self.prefix_cache and len(prompts) > 1 else 0
        if shared >= MIN_SHARED_PREFIX:
            return self._probs_after_prefix(ids, shared, token_ids, desc)
        out: list[list[float]] = [[] for _ in prompts]
        for idx, batch in self._batches(ids, desc):
            logits = self.model(**batch).logits[:, -1, :].float()  # left padding: last position is real
            probs = torch.softmax(logits, dim=-1)[:, token_ids]
            for j, i in enumerate(idx):
                out[i] = probs[j].tolist()
        return out

    def _probs_after_prefix(self, ids: list[list[int]], shared: int, token_ids: list[int], desc: str):
        """The judge rubric (or comparison template) opens every scoring prompt: run those `shared`
        tokens once, then only each prompt's own tokens against a copy of their KV cache, right-padded
        (the prefix fixes the left edge), reading each row's logits at its own last token."""
        prefix = torch.tensor([ids[0][:shared]], device=self.device)
        out = self.model(input_ids=prefix, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        pad = self.tokenizer.pad_token_id
        out: list[list[float]] = [[] for _ in ids]
        for idx in self._length_sorted(ids, f"{desc} (shared prefix)"):
            tails = [ids[i][shared:] for i in idx]
            width = max(map(len, tails))
            inputs = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=self.device)
            mask = torch.tensor([[1] * (shared + len(t)) + [0] * (width - len(t)) for t in tails], device=self.device)
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(idx))
            logits = self.model(input_ids=inputs, attention_mask=mask, **{self.cache_arg: batch_cache}).logits
            last = torch.tensor([len(t) - 1 for t in tails], device=self.device)
            probs = torch.softmax(logits[torch.arange(len(idx)), last].float(), dim=-1)[:, token_ids]
            for j, i in enumerate(idx):
                out[i] = probs[j].tolist()
        return out


# Below this many shared tokens, reusing their KV cache saves less than the copy costs.
MIN_SHARED_PREFIX = 16


def _common_prefix(ids: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own (whose logits
    are read). Compared in token space, so a BPE merge across the boundary cannot misalign it."""
    shared = min(len(x) for x in ids) - 1
    first = ids[0]
    for seq in ids[1:]:
        n = 0
        while n < shared and seq[n] == first[n]:
            n += 1
        shared = n
    return max(shared, 0)
