"""`selfreward eft`: EFT data made the paper's way, from human-ranked responses judged by the SFT model."""

import json

from selfreward import eft
from selfreward.config import compose
from selfreward.files import read_jsonl
from selfreward.generation.base import Sampling
from tests.helpers import selfreward


class Tok:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[0]["content"]


class CannedJudge:
    """Writes "... Score: N" with N looked up from the response's text (unparsed for 'mumble')."""

    tokenizer = Tok()

    def __init__(self, scores):
        self.scores, self.requests = scores, []

    def generate(self, prompts, sampling: Sampling, desc=""):
        self.requests.append(sampling)
        out = []
        for p in prompts:
            response = p.split("Response: ", 1)[1].split("\n", 1)[0]
            score = self.scores[response]
            out.append([f"It is fine. Score: {score}" if score is not None else "It is fine."] * sampling.n)
        return out


RANKED = [
    {"prompt": "Q agree", "responses": ["best", "mid", "worst"], "ranks": [1, 2, 3]},
    {"prompt": "Q disagree", "responses": ["good", "bad"], "ranks": [1, 2]},
    {"prompt": "Q unparsed", "responses": ["mumble", "ok"], "ranks": [2, 1]},
    {"prompt": "Q tie", "responses": ["a", "b"], "ranks": [1, 2]},
]
SCORES = {"best": 5, "mid": 3, "worst": 1, "good": 2, "bad": 4, "mumble": None, "ok": 3, "a": 3, "b": 3}


def test_keeps_only_judgments_that_agree_with_the_human_ranking():
    gen = CannedJudge(SCORES)
    kept, counts = eft.build(gen, compose([]), RANKED)
    assert counts == {"prompts": 4, "kept_prompts": 1, "kept_judgments": 3, "dropped_unparsed": 1, "dropped_tie": 1,
                      "dropped_disagree": 1}
    assert [(r["instruction"], r["response"], r["score"]) for r in kept] == [
        ("Q agree", "best", 5.0), ("Q agree", "mid", 3.0), ("Q agree", "worst", 1.0)]
    assert kept[0]["judgment"] == "It is fine. Score: 5"  # the model's own text: what EFT teaches
    assert all(s.n == 1 for s in gen.requests)  # one sampled judgment per response


def test_the_command_names_a_bad_record_before_loading_a_model(tmp_path):
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(json.dumps(RANKED[0]) + "\n" + json.dumps({"prompt": "Q", "responses": ["x"], "ranks": [1]}) + "\n")
    result = selfreward("eft", str(ranked), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "e.jsonl"),
                        check=False)
    assert result.returncode == 2 and "ranked.jsonl:2: 'responses' must be a list of at least two" in result.stderr
    assert not (tmp_path / "e.jsonl").exists()


def test_the_written_file_is_eft_the_init_reads(tmp_path, monkeypatch):
    from selfreward.data import load_seed

    monkeypatch.setattr("selfreward.eft.load_generator", lambda cfg, model: CannedJudge(SCORES))
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text("".join(json.dumps(r) + "\n" for r in RANKED))
    counts = eft.run(str(ranked), "m", str(tmp_path / "eft.jsonl"), compose([]))
    assert counts["kept_judgments"] == 3 == len(load_seed(tmp_path / "eft.jsonl", "eft"))
    assert read_jsonl(tmp_path / "eft.jsonl")[2]["score"] == 1.0
