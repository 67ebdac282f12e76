import json

import pytest

from tests.helpers import selfreward


@pytest.fixture
def questions(tmp_path):
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "What is 2 plus 2?", "dataset": "toy"}, {"instruction": "Hi"}]))
    mt = tmp_path / "question.jsonl"
    mt.write_text(
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a line.", "Shorter."]})
        + "\n"
        + json.dumps({"question_id": 82, "category": "math", "turns": ["What is 3 plus 4?"]})
        + "\n"
    )
    return alpaca, mt


def test_export_alpaca_eval_and_mt_bench(initialized_run, questions, tmp_path):
    alpaca, mt = questions
    out = tmp_path / "m1.json"
    args = ["--round", "0", "--max-new-tokens", "6"]
    selfreward(
        "export", str(initialized_run), *args, "--questions", str(alpaca), "--format", "alpaca_eval", "--out", str(out)
    )
    records = json.loads(out.read_text())
    assert [r["instruction"] for r in records] == ["What is 2 plus 2?", "Hi"]
    assert all(isinstance(r["output"], str) and r["generator"] == "run-M1" for r in records)
    assert records[0]["dataset"] == "toy" and "dataset" not in records[1]

    out = tmp_path / "m1.jsonl"
    selfreward("export", str(initialized_run), *args, "--questions", str(mt), "--format", "mt_bench", "--out", str(out))
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [81, 82]
    assert [len(a["choices"][0]["turns"]) for a in answers] == [2, 1]  # one answer per turn
    assert all(a["model_id"] == "run-M1" and a["answer_id"] and a["tstamp"] for a in answers)


def test_export_missing_round_is_a_clear_error(initialized_run, questions, tmp_path):
    result = selfreward(
        "export",
        str(initialized_run),
        "--round",
        "3",
        "--questions",
        str(questions[0]),
        "--format",
        "alpaca_eval",
        "--out",
        str(tmp_path / "x.json"),
        check=False,
    )
    assert result.returncode == 2 and "no model for round 3" in result.stderr
    assert not (tmp_path / "x.json").exists()
