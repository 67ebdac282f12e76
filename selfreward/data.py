"""Seed data: IFT (instruction, response) and EFT (instruction, response, judgment) records.

Read from what users have: JSONL (errors name the line), JSON, Parquet, Arrow or CSV files, a folder of
them, a `save_to_disk` folder, or a hub dataset id where the hub is reachable; conversational records
(`messages`: the first user turn is the instruction, the first assistant turn the response); and
`data.columns` for other field names ({instruction: prompt, response: output})."""

from __future__ import annotations

import json
from pathlib import Path

from selfreward.errors import ConfigError
from selfreward.resources import DATA_DIR, find_prompt
from selfreward.schema import Config
from selfreward.validation import round_templates
from selfreward.variants import REGISTRY

IFT_FIELDS = ("instruction", "response")
EFT_FIELDS = ("instruction", "response", "judgment")


def seed_path(path: str | Path | None, kind: str) -> Path:
    return Path(path) if path else DATA_DIR / f"seed_{kind}.jsonl"


def load_seed(path: str | Path | None, kind: str, columns: dict | None = None) -> list[dict]:
    """Read and check a seed file; `kind` is 'ift' or 'eft'. A bad record names the file and line (row)."""
    return [row for _, row in seed_lines(path, kind, columns)]


# Files `datasets` reads by their extension; JSONL stays with our own reader, which names the line.
FORMATS = {".json": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}


def read_records(path: Path | str) -> list[tuple[str, object]]:
    """("where", record) of a JSONL file (by line), of a JSON / Parquet / Arrow / CSV file, a folder of
    them or a `save_to_disk` folder (by row, through `datasets`), or a hub dataset id."""
    local = Path(path)
    if not local.exists() and (local.suffix in (*FORMATS, ".jsonl") or str(path).startswith(("/", ".", "~"))):
        raise ConfigError(f"{path}: no such file or folder")  # a local path, not a hub dataset id
    if local.is_file() and local.suffix in (".jsonl", ""):
        out = []
        with open(local, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append((f"{local}:{lineno}", json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{local}:{lineno}: not valid JSON ({e.msg})") from None
        return out
    import datasets

    try:
        if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "state.json").is_file()
                               or (local / "dataset_dict.json").is_file()):
            data = datasets.load_from_disk(str(local))
            data = data["train"] if isinstance(data, datasets.DatasetDict) else data
        elif local.exists():
            files = sorted(p for p in local.rglob("*") if p.suffix in (*FORMATS, ".jsonl")) if local.is_dir() else [local]
            kinds = {FORMATS.get(p.suffix, "json") for p in files}
            if len(kinds) != 1:
                raise ConfigError(f"{local}: no JSON/JSONL/Parquet/Arrow/CSV files" if not kinds else
                                  f"{local}: files of several formats ({', '.join(sorted(kinds))}); keep one")
            data = datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
        else:  # a hub dataset id, where the hub is reachable
            data = datasets.load_dataset(str(path), split="train")
    except ConfigError:
        raise
    except Exception as e:  # datasets raises many kinds; the user needs the file and the reason
        raise ConfigError(f"{path}: cannot be read as a dataset ({type(e).__name__}: {str(e)[:300]})") from None
    return [(f"{path} row {i}", row) for i, row in enumerate(data)]


def _from_messages(messages) -> dict:
    """A conversational record: the first user turn is the instruction, the first assistant turn the response."""
    turns = {}
    for m in messages if isinstance(messages, list) else []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            turns.setdefault("instruction" if m["role"] == "user" else "response", m.get("content"))
    return turns


def normalize_record(row, columns: dict | None) -> dict:
    """A record in this project's field names: `columns` maps ours to the file's (data.columns)."""
    if not isinstance(row, dict):
        return {}
    out = dict(row)
    for ours, theirs in (columns or {}).items():
        if theirs in row:
            out[ours] = row[theirs]
    if "messages" in row and "instruction" not in out:
        out = {**_from_messages(row["messages"]), **out}
    return out


def seed_lines(path: str | Path | None, kind: str, columns: dict | None = None) -> list[tuple[str, dict]]:
    """("file:line", record) for every record of a seed file, each checked: valid JSON, every field
    of its kind a non-empty string."""
    path = seed_path(path, kind)
    fields = IFT_FIELDS if kind == "ift" else EFT_FIELDS
    rows = []
    for where, raw in read_records(path):
        row = normalize_record(raw, columns)
        missing = [k for k in fields if not isinstance(row.get(k), str)]
        if missing:
            hint = " (data.columns maps other names)" if isinstance(raw, dict) else ""
            raise ConfigError(f"{where}: missing string field(s) {', '.join(missing)}{hint}")
        empty = [k for k in fields if not row[k].strip()]
        if empty:
            raise ConfigError(f"{where}: empty field(s) {', '.join(empty)}")
        rows.append((where, row))
    if not rows:
        raise ConfigError(f"{path}: no records")
    return rows


def heldout_prompts(cfg: Config) -> list[dict]:
    """The evaluation's held-out prompts {id, prompt}: `eval.prompts_path` (any format `data.*` takes;
    `prompt`, `instruction` or a conversation's first user turn), or the shipped set."""
    path = Path(cfg.eval.prompts_path) if cfg.eval.prompts_path else DATA_DIR / "heldout_prompts.jsonl"
    out = []
    for i, (where, raw) in enumerate(read_records(path)):
        row = normalize_record(raw, cfg.data.columns)
        prompt = row.get("prompt", row.get("instruction"))
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{where}: no prompt (a non-empty 'prompt', 'instruction' or first user turn)")
        out.append({**{k: v for k, v in row.items() if k != "messages"}, "id": str(row.get("id", f"h{i:04d}")),
                    "prompt": prompt})
    return out


def seed_instructions(cfg: Config) -> list[str]:
    """The seed tasks self-instruct samples its k shots from: IFT instructions, except records marked
    `kind: self_instruct` (demonstrations of the prompt-writing request itself)."""
    return [r["instruction"] for r in load_seed(cfg.data.ift_path, "ift", cfg.data.columns)
            if r.get("kind") != "self_instruct"]


def seed_texts(cfg: Config) -> list[str]:
    """The text the tiny tokenizer is trained on: the run's seed data, the round's templates and those
    every registered variant renders by default (only those, so a prompt file added for another recipe
    does not change this run's tokenizer; nor does the variant, so arms of a sweep share one M1)."""
    texts = []
    for kind, path in (("ift", cfg.data.ift_path), ("eft", cfg.data.eft_path)):
        texts += [v for row in load_seed(path, kind, cfg.data.columns) for v in row.values() if isinstance(v, str)]
    templates = [*round_templates(cfg), *(t for variant in REGISTRY.values() for t in variant().templates(cfg))]
    paths = dict.fromkeys(find_prompt(value, key) for key, value in templates)
    return texts + [p.read_text() for p in paths]
