"""The benchmark suite: every row can fail (each measured thing, degraded on purpose, misses its target),
and the entry point produces every row at its minimal size."""

import json
import math
import random
import subprocess
import sys
import time

import pytest

from benchmarks import rows, suite
from selfreward.config import compose
from selfreward.generation.base import Sampling


class FakeTokenizer:
    chat_template = "x"

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]  # one token a character: each score digit is its own token

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[0]["content"]


class FakeGenerator:
    """A generator with a cost model: `per_call` seconds per generate call plus `per_row` per prompt,
    and a quadratic term when degraded."""

    def __init__(self, per_call=0.0, per_row=0.0, quadratic=0.0):
        self.tokenizer, self.batch_size = FakeTokenizer(), 64
        self.per_call, self.per_row, self.quadratic = per_call, per_row, quadratic

    def generate(self, prompts, sampling: Sampling, desc=""):
        rows_n = len(prompts) * sampling.n
        time.sleep(self.per_call + self.per_row * rows_n + self.quadratic * rows_n ** 2)
        return [["one two three four"] * sampling.n for _ in prompts]

    def next_token_probs(self, prompts, ids, desc=""):
        n = len(prompts)
        time.sleep(self.per_call + self.per_row * n + self.quadratic * n ** 2)
        return [[random.random() for _ in ids] for _ in prompts]


SIZE = suite.SIZES["minimal"]


def test_batched_generation_fails_when_batching_does_not_pay():
    size = suite.Size(**{**SIZE.__dict__, "prompts": 32})
    good = suite.batched_generation(FakeGenerator(per_call=0.02, per_row=0.0001), size)
    slow = suite.batched_generation(FakeGenerator(per_row=0.002), size)
    assert good.met is True and slow.met is False


def test_scaling_fails_with_a_quadratic_step_and_with_free_work():
    cfg = compose([])
    size = suite.Size(**{**SIZE.__dict__, "scale_batch": 4, "scale_steps": (1, 2, 4, 8)})
    linear = suite.scaling_rows(FakeGenerator(per_call=0.002, per_row=0.01), cfg, size)  # dwarfs the Python around it
    quadratic = suite.scaling_rows(FakeGenerator(per_row=0.0005, quadratic=0.0002), cfg, size)
    assert [r.met for r in linear] == [True, True], [r.as_dict() for r in linear]
    assert quadratic[0].met is False and quadratic[0].value > 1.1
    free = rows.exponent("x", [(1, 1.0), (2, 1.1), (4, 1.2), (8, 1.3)], "work that costs nothing more")
    assert free.met is False and free.value < 0.9


def test_a_faster_judge_that_judges_worse_fails_its_gate():
    fast_good = rows.judge_speed("j", 1.0, 30.0, 0.90, 0.91, 10.0, "")
    fast_bad = rows.judge_speed("j", 1.0, 30.0, 0.50, 0.91, 10.0, "")  # e.g. random scores
    slow = rows.judge_speed("j", 1.0, 5.0, 0.95, 0.91, 10.0, "")
    assert (fast_good.met, fast_bad.met, slow.met) == (True, False, False)
    assert "less accurate" in fast_bad.as_dict()["detail"]


def test_a_judge_returning_random_scores_fails_on_the_testbed_items():
    """End to end through the row: the fake's logprob judge reads random probabilities."""
    eft = [{"instruction": f"sort {w}", "response": r, "judgment": "Score: 0", "score": 0}
           for w in ("cab", "dca", "feb", "hag", "bad", "ceg") for r in ("".join(sorted(w)), w)]
    rng = random.Random(0)  # one fixed draw: 6 random pairs all come out right once in 64 draws
    judged = [{"score": rng.random()} for _ in eft]
    truth = [{"score": 1.0 if r["response"] == "".join(sorted(r["instruction"][5:])) else 0.0} for r in eft]
    assert suite._pairwise(eft, truth, 1) == 1.0
    row = rows.judge_speed("j", 1.0, 30.0, suite._pairwise(eft, judged, 1), suite._pairwise(eft, truth, 1), 10.0, "")
    assert row.met is False


def test_a_baseline_at_chance_or_unparsed_fails_the_judge_gate():
    # the figures once published: a sampled baseline cut before its score, every judgment a tie (0.500)
    assert rows.judge_speed("j", 0.42, 2.08, 0.80, 0.50, 2.0, "").met is False
    cut = rows.judge_speed("j", 1.0, 30.0, 0.90, 0.91, 10.0, "", parsed=(1.0, 0.0))
    assert cut.met is False and "parse rate" in cut.as_dict()["detail"]
    assert rows.judge_speed("j", 1.0, 30.0, 0.90, 0.91, 10.0, "", parsed=(1.0, 0.95)).met is True


class CheckingGenerator:
    """A judge that is right about every testbed item and writes its judgment one character a token,
    cut at `max_new_tokens` like a real generate call; the logprob reading is right too."""

    tokenizer, batch_size = FakeTokenizer(), 64

    @staticmethod
    def _right(prompt: str) -> bool:
        import re

        from selfreward import testbed

        instruction, response = re.match(r"Check: (.*) = ([a-z0-9 ]*?)(?:Score|$)", prompt).groups()
        return bool(testbed.check(instruction, response))

    def generate(self, prompts, sampling: Sampling, desc=""):
        return [[f"Score: {int(self._right(p))}"[: sampling.max_new_tokens]] * sampling.n for p in prompts]

    def next_token_probs(self, prompts, ids, desc=""):
        return [[0.1, 0.9] if self._right(p) else [0.9, 0.1] for p in prompts]


def test_the_real_judge_row_gives_its_sampled_baseline_room_to_score(tmp_path):
    from selfreward.files import write_jsonl

    eft = [{"instruction": f"sort {w}", "response": r, "judgment": "", "score": int(r == "".join(sorted(w)))}
           for w in ("cab", "dca", "feb", "hag") for r in ("".join(sorted(w)), w)]
    write_jsonl(tmp_path / "heldout_eft.jsonl", eft)
    cfg = compose(["recipe=testbed", f"eval.eft_path={tmp_path / 'heldout_eft.jsonl'}"])
    row = suite.judge_speed_row(CheckingGenerator(), cfg, SIZE, reasoning=False).as_dict()
    assert "pairwise accuracy 1.000 vs 1.000; parsed 1.000 vs 1.000" in row["detail"], row


def test_the_pairs_row_fails_when_the_data_work_is_slow():
    assert suite.pairs_at_scale_row(SIZE).met is True
    slowed = suite.pairs_at_scale_row(SIZE, work=lambda c, j: (suite.pairs_work(c, j), time.sleep(5.1)))
    assert slowed.met is False
    hungry = suite.pairs_at_scale_row(SIZE, work=lambda c, j: bytearray(1100 * 2**20))
    assert hungry.met is False and "peak memory" in hungry.as_dict()["detail"]


def test_time_rows_fail_with_overhead():
    assert rows.overhead("u", 1.0, 1.0, 1.1, "").met is True
    assert rows.overhead("u", 1.3, 1.0, 1.1, "").met is False  # e.g. a slowed trainer setup
    assert rows.outside_share("s", [(2.2, 2.0), (2.3, 2.1)], 0.10, "").met is True
    assert rows.outside_share("s", [(3.2, 2.0), (3.3, 2.1)], 0.10, "").met is False  # 1 s more outside


@pytest.mark.slow
def test_benchmark_entry_point_minimal(tmp_path):
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "benchmarks", "--size", "minimal", "--out", str(out)], check=True,
                   capture_output=True)
    result = json.loads(out.read_text())
    assert "CPU cores" in result["machine"] and result["size"] == "minimal"
    names = [r["name"].split(" (")[0] for r in result["rows"]]
    assert names == [
        "batched generation vs a per-prompt loop", "judge scoring with the shared rubric prefix cached vs not",
        "round generation work vs prompts", "round generation work vs candidates per prompt",
        "logprob judge vs 3 sampled judgments", "reasoning judge",
        "pairs, SFT set, votes and histogram of a paper-sized round",
        "update stage vs a bare TRL DPOTrainer script", "share of a steady-state round outside model calls",
        "share of the README's first command outside model calls",
        "README's first command vs the same recipe in one process"]
    for r in result["rows"]:
        assert set(r) == {"name", "value", "target", "met", "detail"} and r["detail"]
        # finite (at the minimal size a scaling exponent is noise and may fall below zero)
        assert isinstance(r["value"], float) and math.isfinite(r["value"])


class RankedFakeGenerator(FakeGenerator):
    """Writes `text` with the default sampler and `reference_text` with a full sort (sampler_ranks=()),
    `full_cost` seconds slower. Every call takes 50 ms besides, so that a call's own jitter (the first
    one's warm-up) cannot make two equal samplers look 1.3x apart."""

    def __init__(self, full_cost=0.2, text="one two", reference_text="one two"):
        super().__init__()
        self.sampler_ranks, self.full_cost, self.text, self.reference_text = (64,), full_cost, text, reference_text

    def generate(self, prompts, sampling, desc=""):
        full = self.sampler_ranks == ()
        time.sleep(0.05 + (self.full_cost if full else 0.0))
        return [[self.reference_text if full else self.text] * sampling.n for _ in prompts]


def test_real_decoding_row_fails_below_half_the_matmul_bound():
    from benchmarks import real

    sampling = Sampling(0.8, 0.95, 16, n=2)
    gen = FakeGenerator(per_call=0.1)  # 2 prompts x 2 rows x 4 tokens in 0.1 s: 160 tokens/s
    gen.model = type("M", (), {"dtype": "torch.bfloat16"})()
    assert real.decoding_row(gen, ["a", "b"], sampling, bound=200.0).met is True
    assert real.decoding_row(gen, ["a", "b"], sampling, bound=400.0).met is False


def test_real_sampler_row_fails_when_slower_or_when_the_text_differs():
    from benchmarks import real

    sampling = Sampling(0.8, 0.95, 16, n=2)
    assert real.sampler_row(RankedFakeGenerator(), ["a"], sampling).met is True
    assert real.sampler_row(RankedFakeGenerator(full_cost=0.0), ["a"], sampling).met is False  # no faster
    assert real.sampler_row(RankedFakeGenerator(reference_text="one three"), ["a"], sampling).met is False


def test_matmul_bound_counts_every_linear_layer():
    import torch

    from benchmarks import real

    small = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())
    big = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(40)])
    assert real.matmul_bound(big, 8) < real.matmul_bound(small, 8)


def test_a_rounds_training_counts_once_for_its_ranks():
    from benchmarks import real

    calls = [{"kind": "generate", "seconds": 5.0}, {"kind": "train", "seconds": 3.0},
             {"kind": "train", "seconds": 3.2}, {"kind": "score", "seconds": 1.0}, {"kind": "round", "seconds": 10.0},
             {"kind": "train", "seconds": 2.0}, {"kind": "round", "seconds": 2.5}]
    assert real.rounds_inside(calls) == [(10.0, 9.2), (2.5, 2.0)]
    assert rows.outside_share("s", real.rounds_inside(calls), 0.1, "").met is False  # 0.54 s more outside in round 2


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """benchmarks/gpu.py on CPU at a toy shape: generation and our DPO stage under ZeRO-2 through
    accelerate launch run, and the JSON carries every figure the GPU run reports."""
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry-run", "--out", str(out)], check=True,
                   capture_output=True, timeout=600)
    toy = json.loads(out.read_text())["shapes"]["toy"]
    assert toy["generation"]["tokens_per_s"] > 0 and 0 < toy["generation"]["share_of_bound"]
    assert toy["generation"]["expected_memory_gib"] > 0 and toy["generation"]["peak_memory_gib"] is None
    assert toy["dpo"]["train_seconds"] > 0 and toy["dpo"]["expected_memory_gib"] > 0


def test_the_stage_profile_reads_each_rounds_manifest(tmp_path, capsys):
    from benchmarks import stages

    for name, seconds in (("before", {"prompts": 9.0, "judge": 56.0}), ("after", {"prompts": 4.5, "judge": 14.0})):
        (tmp_path / name / "round_1").mkdir(parents=True)
        (tmp_path / name / "round_1" / "manifest.json").write_text(
            json.dumps({stage: {"seconds": s, "records": 1} for stage, s in seconds.items()}))
    assert stages.main([f"a={tmp_path / 'before'}", f"b={tmp_path / 'after'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| prompts | 9.0 | 4.5 | 2.0× |" and lines[-1] == "| **all stages** | 65.0 | 18.5 | 3.5× |"
    with pytest.raises(SystemExit) as exit_:
        stages.main([f"a={tmp_path / 'missing'}"])
    assert exit_.value.code == 2 and "missing/round_1/manifest.json: no such file" in capsys.readouterr().err
