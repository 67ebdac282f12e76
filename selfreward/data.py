"""Seed data: IFT (instruction, response) and EFT (instruction, response, judgment) JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

from selfreward.config import rendered_templates
from selfreward.errors import ConfigError
from selfreward.resources import DATA_DIR, find_prompt
from selfreward.schema import Config

IFT_FIELDS = ("instruction", "response")
EFT_FIELDS = ("instruction", "response", "judgment")


def seed_path(path: str | Path | None, kind: str) -> Path:
    return Path(path) if path else DATA_DIR / f"seed_{kind}.jsonl"


def load_seed(path: str | Path | None, kind: str) -> list[dict]:
    """Read and check a seed file; `kind` is 'ift' or 'eft'. A bad line names the file and line."""
    return [row for _, row in seed_lines(path, kind)]


def seed_lines(path: str | Path | None, kind: str) -> list[tuple[str, dict]]:
    """("file:line", record) for every record of a seed file, each checked: valid JSON, every field
    of its kind a non-empty string."""
    path = seed_path(path, kind)
    fields = IFT_FIELDS if kind == "ift" else EFT_FIELDS
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            missing = [k for k in fields if not isinstance(row.get(k), str)]
            if missing:
                raise ConfigError(f"{path}:{lineno}: missing string field(s) {', '.join(missing)}")
            empty = [k for k in fields if not row[k].strip()]
            if empty:
                raise ConfigError(f"{path}:{lineno}: empty field(s) {', '.join(empty)}")
            rows.append((f"{path}:{lineno}", row))
    if not rows:
        raise ConfigError(f"{path}: no records")
    return rows


def heldout_prompts(cfg: Config) -> list[dict]:
    """The evaluation's held-out prompts {id, prompt}: `eval.prompts_path`, or the shipped set."""
    path = Path(cfg.eval.prompts_path) if cfg.eval.prompts_path else DATA_DIR / "heldout_prompts.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def seed_instructions(cfg: Config) -> list[str]:
    """The seed tasks self-instruct samples its k shots from: IFT instructions, except records marked
    `kind: self_instruct` (demonstrations of the prompt-writing request itself)."""
    return [r["instruction"] for r in load_seed(cfg.data.ift_path, "ift") if r.get("kind") != "self_instruct"]


def seed_texts(cfg: Config) -> list[str]:
    """The text the tiny tokenizer is trained on: the run's seed data and the templates it renders
    (only those, so a prompt file added for another recipe does not change this run's tokenizer)."""
    texts = []
    for kind, path in (("ift", cfg.data.ift_path), ("eft", cfg.data.eft_path)):
        texts += [v for row in load_seed(path, kind) for v in row.values() if isinstance(v, str)]
    paths = dict.fromkeys(find_prompt(value, key) for key, value in rendered_templates(cfg))
    return texts + [p.read_text() for p in paths]
