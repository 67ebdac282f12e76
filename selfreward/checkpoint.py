"""Loading and saving a round's model, whether it is stored merged or as a LoRA adapter.

With `lora.merge=false` a round's `model/` folder holds only the adapter (peft's
`adapter_model.safetensors` + `adapter_config.json`) and the tokenizer; `adapter_config.json`'s
`base_model_name_or_path` names the model the adapter was trained on, which may itself be such a
folder. Every stage loads through `load_causal_lm`, which follows that chain and merges, so the
generator, the evaluator and the next round's trainer all see plain weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfreward.round import StageName
from selfreward.templates import ensure_chat_template

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def set_adapter_base(path: str | Path, base: str | Path) -> None:
    """peft records the name the base model was loaded under, which after a merge is the chain's first
    model; the next round needs the model this adapter was actually trained on."""
    config_file = Path(path) / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(Path(base).resolve()) if Path(base).exists() else str(base)
    config_file.write_text(json.dumps(config, indent=2))


def load_causal_lm(path: str | Path, dtype, trust_remote_code: bool = False, **kwargs):
    """`AutoModelForCausalLM.from_pretrained`, or for an adapter folder its base (recursively) with the
    adapter merged in."""
    from transformers import AutoModelForCausalLM

    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, trust_remote_code=trust_remote_code, **kwargs
        )
    from peft import PeftModel

    base = load_causal_lm(adapter_base(path), dtype, trust_remote_code, **kwargs)
    return PeftModel.from_pretrained(base, str(path)).merge_and_unload()


def native_bf16(device: str) -> bool:
    """Whether the device computes bf16 matmuls natively: a CUDA GPU that supports bf16, or a CPU with
    AMX-BF16 or AVX512-BF16 (about 3-4x an fp32 matmul there; elsewhere bf16 is emulated: on an AVX2
    CPU a SmolLM2 training step took 266 s in bf16_mixed)."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to ask, so the safe choice
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def load_tokenizer(path: str | Path, cfg, **kwargs):
    """The tokenizer saved with a model, with `model.chat_template` when it has none and a pad token
    (its EOS when it has none). Every stage that renders prompts loads tokenizers through here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=cfg.model.trust_remote_code, **kwargs)
    ensure_chat_template(tokenizer, cfg.model.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def trains_adapter(lora, stage: str) -> bool:
    """Whether a training stage trains a LoRA adapter (not with `lora.init=false` at the init)."""
    return lora.enabled and (stage != StageName.init or lora.init)


def peft_config(lora, stage: StageName = StageName.update):
    """A peft LoraConfig from `cfg.lora` for a training stage, or None when it trains full weights."""
    if not trains_adapter(lora, stage):
        return None
    from peft import LoraConfig

    targets = list(lora.target_modules)
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


def merge_adapter(adapter_dir: Path, out_dir: Path, dtype, trust_remote_code: bool = False) -> None:
    """Write base + adapter as one plain checkpoint (run in one process, outside any DeepSpeed engine)."""
    load_causal_lm(adapter_dir, dtype, trust_remote_code).save_pretrained(str(out_dir))
