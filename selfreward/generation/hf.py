"""HF `model.generate` backend: length-sorted, left-padded batches, bf16 on GPU.

A model saved as a LoRA adapter (`lora.merge=false`) is loaded on its base and merged. With
`launch.generation_device_map=auto` one process spreads a model too big for one GPU over all visible
GPUs; with `launch.generation_processes>1` each rank holds a copy (see `generation.parallel`).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from selfreward.checkpoint import load_causal_lm
from selfreward.config import Config
from selfreward.generation import Sampling
from selfreward.templates import ensure_chat_template


class HFGenerator:
    def __init__(self, model_path: str, cfg: Config, device: str | None = None, progress: bool = True):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, padding_side="left", trust_remote_code=cfg.model.trust_remote_code
        )
        ensure_chat_template(self.tokenizer, cfg.model.chat_template)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if (cfg.train.bf16 and self.device == "cuda") else torch.float32
        device_map = cfg.launch.generation_device_map
        self.model = load_causal_lm(
            model_path, dtype, cfg.model.trust_remote_code, **({"device_map": device_map} if device_map else {})
        )
        if device_map:
            self.device = self.model.device  # where the inputs go: the first layer's device
        else:
            self.model.to(self.device)
        self.model.eval()
        self.batch_size = cfg.generation.batch_size

    def _batches(self, prompts: list[str], desc: str):
        """Yield (indices, encoded batch); sorting by length keeps padding, and wasted compute, small."""
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch", leave=False,
                          disable=not self.progress):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            yield idx, batch.to(self.device)

    @torch.inference_mode()
    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        torch.manual_seed(sampling.seed)
        out: list[list[str]] = [[] for _ in prompts]
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n)
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False)
        for idx, batch in self._batches(prompts, desc):
            seqs = self.model.generate(
                **batch, **kwargs, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id
            )
            new = seqs[:, batch["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[j * sampling.n : (j + 1) * sampling.n]]
        return out

    @torch.inference_mode()
    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        out: list[list[float]] = [[] for _ in prompts]
        for idx, batch in self._batches(prompts, desc):
            logits = self.model(**batch).logits[:, -1, :].float()  # left padding: last position is real
            probs = torch.softmax(logits, dim=-1)[:, token_ids]
            for j, i in enumerate(idx):
                out[i] = probs[j].tolist()
        return out
