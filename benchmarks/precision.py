"""SmolLM2-135M-Instruct on this machine: prefill and sampled generation in fp32 and bf16, and bf16's
logit difference against fp32 (docs/real-models.md shows its output).

    python -m benchmarks.precision        # about 1.5 minutes on 2 CPU cores; fetches the model once
"""

import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfreward import models


def main() -> None:
    path = models.fetch("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    asks = [[{"role": "user", "content": f"Write a short paragraph about topic number {i}, in detail."}]
            for i in range(16)]
    texts = [tok.apply_chat_template(a, tokenize=False, add_generation_prompt=True) for a in asks]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids = torch.randint(100, 40000, (16, 128))
    out, logits = {}, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        with torch.inference_mode():
            m(ids[:2])
            t = time.perf_counter()
            for _ in range(3):
                m(ids, logits_to_keep=1)
            prefill = 3 * ids.numel() / (time.perf_counter() - t)
            logits[name] = m(enc["input_ids"], attention_mask=enc["attention_mask"]).logits[:, -1].float()
            torch.manual_seed(0)
            t = time.perf_counter()
            g = m.generate(**enc, max_new_tokens=48, do_sample=True, temperature=0.8, top_p=0.95,
                           pad_token_id=tok.pad_token_id)
            new = (g[:, enc["input_ids"].shape[1]:] != tok.pad_token_id).sum().item()
            gen = new / (time.perf_counter() - t)
        out[name] = {"prefill_tokens_per_s": round(prefill), "sampled_tokens_per_s": round(gen)}
        del m
    d = (logits["fp32"] - logits["bf16"]).abs()
    p32, p16 = logits["fp32"].softmax(-1), logits["bf16"].softmax(-1)
    top1 = (logits["fp32"].argmax(-1) == logits["bf16"].argmax(-1)).float().mean().item()
    out["last_position_logits"] = {"max_abs_diff": round(d.max().item(), 3), "mean_abs_diff": round(d.mean().item(), 4),
                                   "top1_agreement": top1, "max_prob_diff": round((p32 - p16).abs().max().item(), 4)}
    print(json.dumps(out))
    print("| | fp32 | bf16 |\n| --- | --- | --- |")
    print(f"| prefill, tokens/s | {out['fp32']['prefill_tokens_per_s']} | {out['bf16']['prefill_tokens_per_s']} |")
    sampled = out["fp32"]["sampled_tokens_per_s"], out["bf16"]["sampled_tokens_per_s"]
    print(f"| sampled generation, tokens/s | {sampled[0]} | {sampled[1]} |")


if __name__ == "__main__":
    main()
