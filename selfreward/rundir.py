"""The run directory: the documented contract between stages.

    <run_dir>/config.yaml                 resolved config, written once by the orchestrator
    <run_dir>/base_model/                 the tiny model + tokenizer (only when model.name_or_path is null)
    <run_dir>/init/model/                 M1
    <run_dir>/round_<t>/prompts.jsonl     {id, prompt}
                        candidates.jsonl  {prompt_id, prompt, candidate_id, response}
                        judgments.jsonl   {prompt_id, candidate_id, score, scores, judgments}
                        pairs.jsonl       {prompt_id, prompt, chosen, rejected, score_chosen, score_rejected}
                        sft.jsonl         {prompt_id, prompt, response, score}
                        model/            M_{t+1}
                        metrics.json
                        manifest.json     one entry per finished stage: records, seconds, details

Every file is written to a temporary name and renamed, so a file that exists is complete; a stage is
done when its manifest entry exists. Rerunning a command therefore skips finished stages.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

STAGE_OUTPUTS = {
    "prompts": "prompts.jsonl",
    "candidates": "candidates.jsonl",
    "judge": "judgments.jsonl",
    "pairs": "pairs.jsonl",
    "sft_data": "sft.jsonl",
    "update": "model",
}


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only if the block finishes."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base_model(self) -> Path:
        return self.root / "base_model"

    @property
    def init_dir(self) -> Path:
        return self.root / "init"

    def round_dir(self, t: int) -> Path:
        return self.root / f"round_{t}"

    def stage_dir(self, t: int | None) -> Path:
        """Round 0 / None is the init stage."""
        return self.init_dir if not t else self.round_dir(t)

    def output(self, t: int, stage: str) -> Path:
        return self.round_dir(t) / STAGE_OUTPUTS[stage]

    def model(self, t: int | None) -> Path:
        return self.stage_dir(t) / "model"

    # -- which model plays which part ---------------------------------------------------------
    def base(self, cfg) -> str:
        """The starting checkpoint: the user's path or hub id, or the embedded tiny model."""
        return cfg.model.name_or_path or str(self.base_model)

    def initial(self, cfg) -> str:
        """M1: the init SFT's output, or the base model itself with init.skip=true."""
        return self.base(cfg) if cfg.init.skip else str(self.model(None))

    def policy(self, cfg, t: int) -> str:
        """M_t: the model that writes prompts, answers and judges in round t."""
        return str(self.model(t - 1)) if t > 1 else self.initial(cfg)

    # -- manifests ---------------------------------------------------------------------------
    def manifest(self, t: int | None) -> dict:
        path = self.stage_dir(t) / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def is_done(self, t: int | None, stage: str) -> bool:
        return stage in self.manifest(t)

    def mark_done(self, t: int | None, stage: str, **entry: Any) -> None:
        manifest = self.manifest(t)
        manifest[stage] = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}
        write_json(self.stage_dir(t) / "manifest.json", manifest)
