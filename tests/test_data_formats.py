"""Seed and held-out data in the formats users have: JSONL, JSON, Parquet, Arrow, folders of them,
`save_to_disk` folders, conversational records and other column names; bad records named by file and row."""

import json

import pytest

from selfreward.config import compose
from selfreward.data import heldout_prompts, load_seed
from selfreward.errors import ConfigError

ROWS = [{"instruction": f"Say {w}.", "response": f"{w}."} for w in ("yes", "no", "maybe")]


def _write(tmp_path, fmt: str, rows=ROWS):
    import datasets

    data = datasets.Dataset.from_list(rows)
    path = tmp_path / f"ift.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        data.to_parquet(str(path))
    elif fmt == "arrow":  # a folder of Arrow shards, as datasets writes them
        data.save_to_disk(str(tmp_path / "saved"))
        path = next((tmp_path / "saved").glob("*.arrow"))
    elif fmt == "save_to_disk":
        path = tmp_path / "saved"
        data.save_to_disk(str(path))
    elif fmt == "folder":
        path = tmp_path / "parts"
        path.mkdir()
        for i, r in enumerate(rows):
            (path / f"part{i}.jsonl").write_text(json.dumps(r) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "arrow", "save_to_disk", "folder"])
def test_every_format_reads_the_same_records(tmp_path, fmt):
    rows = load_seed(_write(tmp_path, fmt), "ift")
    assert [(r["instruction"], r["response"]) for r in rows] == [(r["instruction"], r["response"]) for r in ROWS]


def test_conversational_records_and_a_column_mapping(tmp_path):
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                           {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"},
                           {"role": "assistant", "content": "No."}]}]
    [row] = load_seed(_write(tmp_path, "jsonl", chats), "ift")
    assert (row["instruction"], row["response"]) == ("Hi?", "Hello.")  # the first user and assistant turns
    renamed = [{"prompt": "Q1", "output": "A1", "critique": "Fine. Score: 4"}]
    path = _write(tmp_path, "parquet", renamed)
    columns = {"instruction": "prompt", "response": "output", "judgment": "critique"}
    [row] = load_seed(path, "eft", columns)
    assert (row["instruction"], row["response"], row["judgment"]) == ("Q1", "A1", "Fine. Score: 4")
    cfg = compose([f"data.ift_path={path}", "data.columns={instruction: prompt, response: output}"])
    assert cfg.data.columns == {"instruction": "prompt", "response": "output"}
    with pytest.raises(ConfigError, match="Valid choices: instruction, response"):
        compose(["data.columns={question: prompt}"])


def test_a_bad_record_names_its_file_and_row(tmp_path):
    path = _write(tmp_path, "parquet", [*ROWS, {"instruction": "Q", "response": ""}])
    with pytest.raises(ConfigError, match=r"ift\.parquet row 3: empty field\(s\) response"):
        load_seed(path, "ift")
    path = _write(tmp_path, "jsonl", [{"prompt": "Q", "output": "A"}])
    with pytest.raises(ConfigError, match=r"ift\.jsonl:1: missing string field\(s\) instruction, response \(data.columns"):
        load_seed(path, "ift")
    with pytest.raises(ConfigError, match="ift.jsonl: no such file or folder"):
        load_seed(tmp_path / "missing" / "ift.jsonl", "ift")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="broken.parquet: cannot be read as a dataset"):
        load_seed(broken, "ift")


def test_heldout_prompts_in_any_format(tmp_path):
    path = _write(tmp_path, "parquet", [{"instruction": "Name a colour."}, {"instruction": "Name a fruit."}])
    prompts = heldout_prompts(compose([f"eval.prompts_path={path}"]))
    assert [(p["id"], p["prompt"]) for p in prompts] == [("h0000", "Name a colour."), ("h0001", "Name a fruit.")]
