import pytest

from selfreward.judge import judge_candidates, score_token_ids
from selfreward.schema import JudgeConfig, JudgeMethod


class FixedJudge:
    """Stand-in backend returning canned judgments / score-token probabilities."""

    def __init__(self, tokenizer, judgments=None, probs=None):
        self.tokenizer, self.judgments, self.probs = tokenizer, judgments, probs
        self.prompts = []

    def generate(self, prompts, sampling, desc=""):
        self.prompts += prompts
        assert sampling.n == len(self.judgments[0])
        return self.judgments[: len(prompts)]

    def next_token_probs(self, prompts, token_ids, desc=""):
        self.prompts += prompts
        self.token_ids = token_ids
        return self.probs[: len(prompts)]


CANDS = [
    {"prompt_id": "p0", "prompt": "What is 2 plus 2?", "candidate_id": 0, "response": "4"},
    {"prompt_id": "p0", "prompt": "What is 2 plus 2?", "candidate_id": 1, "response": "five"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def test_sampled_judge_averages_parsed_and_keeps_failures(tokenizer):
    gen = FixedJudge(tokenizer, judgments=[["ok\nScore: 4", "Score: 5"], ["no score at all", "Score: 9"]])
    rows = judge_candidates(gen, JudgeConfig(samples=2), CANDS, seed=0)
    assert rows[0] == {
        "prompt_id": "p0",
        "candidate_id": 0,
        "score": 4.5,
        "scores": [4.0, 5.0],
        "named_scores": {"Score": 4.5},
        "judgments": ["ok\nScore: 4", "Score: 5"],
    }
    assert rows[1]["score"] is None and rows[1]["scores"] == [None, None]
    assert rows[1]["judgments"] == ["no score at all", "Score: 9"]  # raw text kept for inspection
    assert "Question: What is 2 plus 2?" in gen.prompts[0] and gen.prompts[0].endswith("<|im_start|>assistant\n")


def test_two_named_scores_each_parsed_a_judgment_counts_only_when_both_do(tokenizer):
    judgments = [["Quality: 8/10\nFollowing: 6", "**Quality:** 6\nFollowing: 10/10"],
                 ["Quality: 9", "Quality: 7\nInstruction Following: 5"]]
    cfg = JudgeConfig(samples=2, max_score=10, score_names=["Quality", "Following"])
    rows = judge_candidates(FixedJudge(tokenizer, judgments=judgments), cfg, CANDS, seed=0)
    assert rows[0]["named_scores"] == {"Quality": 7.0, "Following": 8.0}
    assert rows[0]["scores"] == [7.0, 8.0] and rows[0]["score"] == 7.5
    # the first judgment lacks "Following": only the second counts ("Instruction Following" holds the label)
    assert rows[1]["named_scores"] == {"Quality": 7.0, "Following": 5.0} and rows[1]["scores"] == [None, 6.0]
    ranked_by_one = judge_candidates(FixedJudge(tokenizer, judgments=judgments),
                                     JudgeConfig(samples=2, max_score=10, score_names=["Quality", "Following"],
                                                 combine="Following"), CANDS, seed=0)
    assert [r["score"] for r in ranked_by_one] == [8.0, 5.0]


def test_score_tokens_are_single_digits(tokenizer):
    prefix, ids = score_token_ids(tokenizer, 5)
    assert prefix in ("Score:", "Score: ") and len(set(ids)) == 6
    assert [tokenizer.decode([i]).strip() for i in ids] == [str(s) for s in range(6)]


def test_logprob_judge_expected_score(tokenizer):
    probs = [[0, 0, 0, 0, 0.5, 0.5], [0.001, 0, 0, 0, 0, 0.004]]  # second: too little mass on scores
    gen = FixedJudge(tokenizer, probs=probs)
    rows = judge_candidates(gen, JudgeConfig(method=JudgeMethod.logprob), CANDS, seed=0)
    assert rows[0]["score"] == pytest.approx(4.5) and rows[0]["score_probs"] == probs[0]
    assert rows[1]["score"] is None
    assert all(p.endswith("<|im_start|>assistant\nScore:") or p.endswith("assistant\nScore: ") for p in gen.prompts)


def test_logprob_judge_on_real_model(tiny_checkpoint):
    from selfreward.config import compose
    from selfreward.generation import load_generator

    gen = load_generator(compose([]), str(tiny_checkpoint))
    rows = judge_candidates(gen, JudgeConfig(method=JudgeMethod.logprob), CANDS, seed=0)
    assert all(r["score"] is None or 0 <= r["score"] <= 5 for r in rows)
    assert all(abs(sum(r["score_probs"])) <= 1.0 + 1e-6 for r in rows)


def test_the_judges_are_a_registry_the_testbed_adds_the_oracle_to():
    """judge.py reaches no module above it: the oracle (the checker) comes from the testbed, which
    registers it; without the testbed loaded the oracle is refused by name."""
    import subprocess
    import sys

    code = ("import sys; import selfreward.judge as j; from selfreward.schema import JudgeConfig, JudgeMethod\n"
            "assert 'selfreward.testbed' not in sys.modules, 'judge imported the testbed'\n"
            "try: j.judge_candidates(None, JudgeConfig(method=JudgeMethod.oracle), [], 0)\n"
            "except Exception as e: print(type(e).__name__, e)\n"
            "import selfreward.testbed\n"
            "c = [{'prompt_id': 0, 'candidate_id': k, 'prompt': 'sort cab', 'response': r} "
            "for k, r in enumerate(['abc', 'acb'])]\n"
            "print([r['score'] for r in j.judge_candidates(None, JudgeConfig(method=JudgeMethod.oracle), c, 0)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ConfigError judge.method=oracle has no judge registered" in out and "selfreward.testbed" in out
    assert out.strip().endswith("[5, 0]")
