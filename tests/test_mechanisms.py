"""The testbed's self-improvement mechanisms and controls, on hand-made inputs: ScPO's votes, CREAM's
consistency, the random floor, the oracle ceiling, the reasoning judge, and the `pair` task."""

import random
import re

import pytest

from selfreward import testbed, testbed_metrics
from selfreward.config import load_frozen
from selfreward.generation.base import derive_seed
from selfreward.judge import judge_candidates
from selfreward.round import stage_seed
from selfreward.schema import JudgeConfig, JudgeMethod
from selfreward.stats import kendall_tau
from selfreward.pairs import unflipped
from selfreward.variants import cream
from selfreward.variants.random_reward import random_scores
from selfreward.variants.self_consistency import SelfConsistency, majority_examples, vote_pairs
from tests.test_pairs import cand, judg


def answers(pid, *texts):
    return [cand(pid, i, t) for i, t in enumerate(texts)]


def test_votes_pair_a_most_voted_with_a_least_voted_answer():
    cands = answers("a", "12", "12", "7", "12", "9", "9") + answers("b", "x", "x", "x") + answers("c", "1", "2")
    pairs, drops = vote_pairs(cands, SelfConsistency())
    (pair,) = [p for p in pairs if p["prompt_id"] == "a"]
    assert (pair["chosen"], pair["rejected"]) == ("12", "7")  # 3 votes vs 1 (9 has 2)
    assert (pair["chosen_id"], pair["rejected_id"]) == (0, 2)
    assert pair["vote_margin"] == round((3 - 1) / 6, 4) and pair["score_chosen"] == 0.5
    assert drops["dropped_unanimous"] == 1  # b: every answer the same, nothing to contrast
    # c: a 1-1 tie still pairs (first sampled first) unless the share or margin filters drop it
    strict, drops = vote_pairs(cands, SelfConsistency(min_vote_share=0.6))
    assert [p["prompt_id"] for p in strict] == [] and drops["dropped_vote_share"] == 2
    margin, drops = vote_pairs(cands, SelfConsistency(min_vote_margin=0.2))
    assert [p["prompt_id"] for p in margin] == ["a"] and drops["dropped_vote_margin"] == 1


def test_votes_use_the_answer_pattern_and_skip_unparsed():
    cands = answers("a", "so #### 42", "thus #### 42", "hence #### 41", "no answer here")
    (pair,), drops = vote_pairs(cands, SelfConsistency(answer_pattern=r"#### (\d+)"))
    assert (pair["chosen_id"], pair["rejected_id"]) == (0, 2) and drops["unparsed_answers"] == 1


def test_votes_sft_keeps_the_untied_majority():
    cands = answers("a", "12", "12", "7") + answers("b", "1", "2")
    rows, drops = majority_examples(cands, SelfConsistency())
    assert [(r["prompt_id"], r["response"]) for r in rows] == [("a", "12")]  # one row per distinct text
    assert drops == {"dropped_no_majority": 1}


def test_cream_smoothing_is_one_minus_the_mean_rank_agreement():
    now = [judg("a", 0, 3.0), judg("a", 1, 2.0), judg("a", 2, 1.0), judg("b", 0, 1.0), judg("b", 1, 2.0)]
    before = [judg("a", 0, 0.9), judg("a", 1, 0.5), judg("a", 2, 0.7), judg("b", 0, 0.1), judg("b", 1, 0.8)]
    tau_a = kendall_tau([3.0, 2.0, 1.0], [0.9, 0.5, 0.7])  # 1/3
    c = ((tau_a + 1) / 2 + 1.0) / 2  # b agrees completely
    assert cream.smoothing(now, before) == {"cream_consistency": round(c, 4), "label_smoothing": round(1 - c, 4),
                                            "cream_prompts": 2}
    assert cream.smoothing(now, None)["label_smoothing"] == 0.0  # round 1: no previous model
    flipped = [judg("b", 0, 0.9), judg("b", 1, 0.1)]
    rows = [{"prompt_id": "a"}, {"prompt_id": "b"}]
    assert cream.agreeing_prompts(rows, now, flipped) == ([{"prompt_id": "a"}], 1)


def test_cream_flips_each_pair_with_probability_one_minus_c():
    pairs = [{"prompt_id": str(i), "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(10)]
    out, flipped = cream.smooth_labels(pairs, 0.3, seed=5)
    assert flipped == sum(bool(p.get("flipped")) for p in out) > 0
    assert [p for p in out if p.get("flipped")] == [
        {"prompt_id": p["prompt_id"], "chosen": p["rejected"], "rejected": p["chosen"], "flipped": True}
        for p, q in zip(pairs, out) if q.get("flipped")]
    assert cream.smooth_labels(pairs, 0.3, seed=5) == (out, flipped)  # the round's seed decides which
    # the expected share is 1 - C, even where round((1 - C) * n) is 0: a near-consistent judge still
    # trains the odd pair flipped (C = 0.99, 13 pairs: about one round in eight flips one)
    few = pairs[:3] + [{"prompt_id": str(i), "chosen": "c", "rejected": "r"} for i in range(10)]
    flips = [cream.smooth_labels(few, 0.01, seed=s)[1] for s in range(400)]
    assert 0.05 < sum(f > 0 for f in flips) / 400 < 0.25
    many = [cream.smooth_labels(pairs * 100, 0.3, seed=s)[1] / 1000 for s in range(5)]
    assert all(0.25 < share < 0.35 for share in many)
    assert [unflipped(p) for p in out] == [{**p, **({"flipped": True} if q.get("flipped") else {})}
                                                  for p, q in zip(pairs, out)]


def test_random_scores_are_drawn_from_the_seed():
    cfg = JudgeConfig(max_score=5)
    cands = answers("a", "x", "y", "z")
    rows = random_scores(cfg, cands, seed=77)
    assert [r["score"] for r in rows] == [random.Random(derive_seed(77, i)).uniform(0, 5) for i in range(3)]
    assert rows == random_scores(cfg, cands, seed=77) and rows != random_scores(cfg, cands, seed=78)


def test_the_oracle_scores_with_the_checker():
    cands = [cand("a", 0, "abc"), cand("a", 1, "acb")]
    for c in cands:
        c["prompt"] = "sort cab"
    rows = judge_candidates(None, JudgeConfig(method=JudgeMethod.oracle, max_score=1), cands, seed=0)
    assert [r["score"] for r in rows] == [1, 0]


def test_reasoning_judge_reads_the_score_after_its_own_reasoning(tiny_checkpoint):
    from selfreward.config import compose
    from selfreward.generation import load_generator
    from selfreward.judge import score_token_ids

    gen = load_generator(compose(["generation.batch_size=4"]), str(tiny_checkpoint))
    calls = []
    real_probs = gen.next_token_probs
    gen.generate = lambda prompts, sampling, desc="": calls.append(("generate", prompts)) or [
        ["sorted: abc; given abc: same. Score: 0 because"] for _ in prompts]

    def read(prompts, ids, desc=""):
        calls.append(("read", prompts))
        return real_probs(prompts, ids, desc)

    gen.next_token_probs = read
    cfg = JudgeConfig(method=JudgeMethod.logprob, reasoning=True, max_score=1, template="testbed_judge.txt")
    (row,) = judge_candidates(gen, cfg, [{**cand("a", 0, "abc"), "prompt": "sort cab"}], seed=0)
    prefix, _ = score_token_ids(gen.tokenizer, 1)
    assert [c[0] for c in calls] == ["generate", "read"]
    # read where the judge wrote its label, after the reasoning exactly as it wrote it
    assert calls[1][1] == [calls[0][1][0] + "sorted: abc; given abc: same. " + prefix]
    assert row["judgments"] == ["sorted: abc; given abc: same."] and 0 <= row["score"] <= 1


@pytest.mark.parametrize("numbers, target, answer", [("3 8 5 1", "9", "8 1"), ("0 4 7", "11", "4 7")])
def test_pair_task(numbers, target, answer):
    instruction = f"pair {numbers} sum {target}"
    assert testbed.parse(instruction) == ("pair", answer) and testbed.check(instruction, answer)
    assert testbed.check(instruction, " ".join(reversed(answer.split())))  # either order
    assert not testbed.check(instruction, "9 0")
    # a self-written list may hold several pairs: each is right, the first is the canonical answer
    assert testbed.parse("pair 1 2 3 4 sum 5") == ("pair", "1 4")
    assert testbed.check("pair 1 2 3 4 sum 5", "2 3") and not testbed.check("pair 1 2 3 4 sum 5", "1 2")
    assert testbed.parse("pair 1 2 3 sum 9") is None  # no pair sums to 9: not a task


def test_pair_instances_have_one_answer_and_wrong_answers_are_wrong():
    cfg = testbed.TestbedConfig(enabled=True, tasks=["pair"])
    rng = random.Random(3)
    rows = testbed.instances(cfg, rng, 200)
    assert all(testbed.check(r["instruction"], r["answer"]) for r in rows)
    for r in rows:
        assert not testbed.check(r["instruction"], testbed.wrong_answer(rng, r))
    assert testbed.why_not_a_task("pair 1 2 3 sum 9", cfg) == "unparseable"
    assert testbed.why_not_a_task("pair 1 2 sum 3", cfg) == "out_of_range"  # lists have 3-6 numbers


def test_reasoning_judgments_work_the_check_out():
    assert testbed.judgment("pair 3 8 5 1 sum 9", "8 1", "Score", 1, True) == "8+1=9 vs 9: same. Score: 1"
    assert testbed.judgment("pair 3 8 5 1 sum 9", "8 5", "Score", 0, True) == "8+5=13 vs 9: differs. Score: 0"
    assert testbed.judgment("sort cab", "abc", "Score", 1, True) == "sort: abc; given abc: same. Score: 1"
    assert testbed.judgment("sort cab", "abc", "Score", 1, False) == "Score: 1"


def test_candidate_stats_measure_the_generation_verification_gap():
    cands = [{**cand("p", i, r), "prompt": "sort cab"} for i, r in enumerate(["abc", "acb", "acb", "abc"])]
    cands += [{**cand("q", i, r), "prompt": "sort ba"} for i, r in enumerate(["ab", "ba", "ba", "ba"])]
    judged = [judg("p", 0, 0.9), judg("p", 1, 0.2), judg("p", 2, 0.2), judg("p", 3, 0.8),
              judg("q", 0, 0.7), judg("q", 1, 0.1), judg("q", 2, 0.3), judg("q", 3, 0.2)]
    s = testbed_metrics.candidate_stats(cands, judged)
    assert s["candidate_accuracy"] == 0.375 and s["judge_pick_accuracy"] == 1.0
    assert s["vote_accuracy"] == 0.5  # p ties 2-2 and the answer sampled first (abc) wins; q's majority is wrong
    assert s["generation_verification_gap"] == 0.625


def test_sampled_and_majority_accuracy():
    prompts = [{"id": "x", "prompt": "sort cab"}, {"id": "y", "prompt": "sort ba"}]
    m = testbed_metrics.sampled_metrics(prompts, [["abc", "abc", "acb"], ["ba", "ab", "ba"]])
    assert m == {"sampled_accuracy": round(3 / 6, 4), "best_of_n_accuracy": 1.0, "majority_accuracy": 0.5}


# -- each mechanism in the files of a real shortened testbed run (slow) ------------------------------

SHORT_TESTBED = ["recipe=testbed", "testbed.tasks=[sort,pair]", "init.max_steps=40", "testbed.n_ift=200",
                 "testbed.n_eft=200", "testbed.n_heldout=24", "testbed.n_self_instruct=20", "prompts.num_prompts=12",
                 "prompts.seed_share=0.5", "pairs.min_margin=0", "judge.max_mode_share=1.0",
                 "pairs.on_too_few=skip", "launch.in_process=true"]


@pytest.fixture(scope="module")
def mechanisms_sweep(tmp_path_factory):
    """Three arms of one seed, two rounds each: one init, shared by the sweep."""
    from tests.helpers import selfreward

    root = tmp_path_factory.mktemp("mechanisms") / "sweep"
    selfreward("sweep", *SHORT_TESTBED, "variant=self_consistency,cream,random", "seed=0", "rounds=2",
               f"sweep_dir={root}")
    return root


def _run(root, variant):
    from selfreward.rundir import RunDir

    return RunDir(root / f"variant={variant}")


@pytest.mark.slow
def test_a_sweep_of_arms_trains_their_common_init_once(mechanisms_sweep):
    runs = [_run(mechanisms_sweep, v) for v in ("self_consistency", "cream", "random")]
    first, *others = runs
    assert "shared_from" not in first.manifest(None)["init"]
    for rd in others:
        assert rd.manifest(None)["init"]["shared_from"] == str(first.root)
        weights = "model.safetensors"
        assert (rd.model(None) / weights).stat().st_ino == (first.model(None) / weights).stat().st_ino  # linked
        assert (rd.round_dir(2) / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["self_consistency", "cream", "random"])
def test_the_string_testbeds_stage_files_are_the_pinned_bytes(mechanisms_sweep, variant):
    from tests.helpers import assert_pinned

    assert_pinned(f"string testbed, variant={variant}, 2 rounds", mechanisms_sweep / f"variant={variant}", rounds=2)


@pytest.mark.slow
def test_self_consistency_pairs_a_most_voted_with_a_least_voted_answer(mechanisms_sweep):
    from collections import Counter

    from selfreward.files import read_jsonl
    from tests.helpers import selfreward

    rd = _run(mechanisms_sweep, "self_consistency")
    for t in (1, 2):
        assert not rd.output(t, "judge").exists() and "judge" not in rd.manifest(t)
        votes = {}
        for c in read_jsonl(rd.output(t, "candidates")):
            votes.setdefault(c["prompt_id"], Counter())[c["response"].strip()] += 1
        pairs = read_jsonl(rd.output(t, "pairs"))
        for p in pairs:
            counts = votes[p["prompt_id"]]
            assert counts[p["chosen"].strip()] == max(counts.values())
            assert counts[p["rejected"].strip()] == min(counts.values())
            assert p["vote_margin"] == round((max(counts.values()) - min(counts.values())) / sum(counts.values()), 4)
    status = selfreward("status", str(rd.root)).stdout
    assert "skipped: votes rank the candidates (self_consistency)" in status


@pytest.mark.slow
def test_cream_smooths_the_labels_by_one_minus_c_in_what_the_trainer_reads(mechanisms_sweep):
    from selfreward.files import read_jsonl
    from selfreward.variants import cream

    rd = _run(mechanisms_sweep, "cream")
    assert not rd.output(1, "previous_judge").exists()  # round 1 has no judged previous model
    assert rd.manifest(1)["pairs"]["label_smoothing"] == 0.0
    entry = rd.manifest(2)["previous_judge"]
    assert str(rd.model(None)) in entry["inputs"]  # M_{t-1} = M1 judged round 2's candidates
    expected = cream.smoothing(read_jsonl(rd.output(2, "judge")), read_jsonl(rd.output(2, "previous_judge")))
    manifest = rd.manifest(2)
    smoothing = manifest["pairs"]["label_smoothing"]
    assert smoothing == expected["label_smoothing"] == round(1 - manifest["pairs"]["cream_consistency"], 4)
    pairs = read_jsonl(rd.output(2, "pairs"))  # exactly what the DPO trainer reads
    assert sum(p.get("flipped", False) for p in pairs) == manifest["pairs"]["cream_flipped"]
    assert cream.smooth_labels([unflipped(p) for p in pairs], smoothing, stage_seed(load_frozen(rd.root), 2, "pairs"))[1] == \
        manifest["pairs"]["cream_flipped"]
    if not manifest["pairs"].get("skip_update"):
        assert manifest["update"]["records"] == len(pairs)
    metrics = (rd.round_dir(2) / "metrics.json").read_text()
    assert '"label_smoothing"' in metrics and '"cream_consistency"' in metrics


@pytest.mark.slow
def test_random_scores_are_the_rounds_seed(mechanisms_sweep):
    from selfreward.config import load_frozen
    from selfreward.files import read_jsonl
    from selfreward.round import stage_seed

    rd = _run(mechanisms_sweep, "random")
    cfg = load_frozen(rd.root)
    assert str(rd.model(None)) not in rd.manifest(1)["judge"]["inputs"]  # no model judged
    for t in (1, 2):
        candidates, judged = read_jsonl(rd.output(t, "candidates")), read_jsonl(rd.output(t, "judge"))
        size, seed = cfg.generation.batch_size, stage_seed(cfg, t, "judge")
        expected = [s for i in range(0, len(candidates), size)
                    for s in (r["score"] for r in random_scores(cfg.judge, candidates[i : i + size],
                                                                seed * 1_000_003 + i // size))]
        assert [j["score"] for j in judged] == expected


@pytest.mark.slow
def test_the_oracle_arm_agrees_with_the_checker(mechanisms_sweep, tmp_path):
    from selfreward.config import compose
    from selfreward.files import read_jsonl
    from selfreward.rundir import RunDir
    from selfreward.sweep import share_init
    from tests.helpers import selfreward

    args = [*SHORT_TESTBED, "judge.method=oracle", "rounds=1", f"run_dir={tmp_path / 'oracle'}"]
    rd = RunDir(tmp_path / "oracle")
    assert share_init(_run(mechanisms_sweep, "random"), rd)  # judge.method does not shape M1
    selfreward("run", *args)
    assert compose(args).judge.method.value == "oracle"
    judged = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in read_jsonl(rd.output(1, "judge"))}
    outcomes = {}  # prompt -> whether its candidates are right
    for c in read_jsonl(rd.output(1, "candidates")):
        right = bool(testbed.check(c["prompt"], c["response"]))
        assert judged[(c["prompt_id"], c["candidate_id"])] == (1 if right else 0)
        outcomes.setdefault(c["prompt_id"], set()).add(right)
    pairs = read_jsonl(rd.output(1, "pairs"))
    # a pair for exactly the prompts with a right and a wrong candidate (a short init may leave none)
    assert outcomes and {p["prompt_id"] for p in pairs} == {k for k, v in outcomes.items() if v == {True, False}}
    assert all(testbed.check(p["prompt"], p["chosen"]) and not testbed.check(p["prompt"], p["rejected"])
               for p in pairs)


@pytest.mark.slow
def test_the_reasoning_judge_writes_its_check_before_the_score_is_read(tmp_path):
    from selfreward.files import read_jsonl
    from selfreward.rundir import RunDir
    from tests.helpers import selfreward

    rd = RunDir(tmp_path / "reasoning")
    selfreward("run", *SHORT_TESTBED, "judge.reasoning=true", "judge.max_new_tokens=24", "rounds=1",
               f"run_dir={rd.root}")
    eft = read_jsonl(rd.testbed_files["eft"])
    assert all(r["judgment"].endswith(f"Score: {r['score']}") and ". Score:" in r["judgment"] for r in eft)
    for j in read_jsonl(rd.output(1, "judge")):
        (text,) = j["judgments"]  # the reasoning, cut before its own "Score:"; the score read after it
        assert "Score:" not in text and j["score"] is not None and len(j["score_probs"]) == 2


def test_every_seeded_stage_has_its_own_offset():
    from selfreward.config import compose
    from selfreward.round import table

    offsets = [s.seed for s in table() if s.seed is not None]
    assert len(offsets) == len(set(offsets))
    assert isinstance(stage_seed(compose([]), 2, "pairs"), int)  # CREAM draws its flips from it


def same_shape(text: str) -> str:
    """A report's table text with its per-round columns folded into one: a page quotes a 3-round sweep,
    a test prints a shortened one."""
    return re.sub(r"(\| round \d+ )+", "| round t ", re.sub(r"(\| --- )+", "| --- ", text))


@pytest.mark.slow
def test_the_testbed_pages_tables_are_what_the_report_prints(mechanisms_sweep):
    """Each table docs/testbed.md says `selfreward report` printed has the header the command prints on
    a real (shortened) sweep, and the page quotes a whole table of it, not a hand-made one."""
    from pathlib import Path

    from tests.helpers import selfreward
    from tests.test_docs import MARKER, tables

    selfreward("report", str(mechanisms_sweep))
    printed = (mechanisms_sweep / "report.md").read_text()
    page = Path(__file__).parents[1] / "docs" / "testbed.md"
    # the string testbed's tables; the constraint testbed's (runs/if_arms) are checked in test_smollm2.py
    marked = [t for above, t in tables(page) if (m := MARKER.match(above)) and m.group(2) == "selfreward report runs/arms"]
    assert len(marked) == 2

    for table in marked:
        assert same_shape(table[0]) in same_shape(printed) and len(table) > 2, table[0]
    # a metric that does not apply to an arm is an empty cell, never a number (self_consistency: no judge)
    row = next(line for line in printed.splitlines() if line.startswith("| variant=self_consistency | 1 |"))
    header = next(line for line in printed.splitlines() if line.startswith("| setting | runs |"))
    cells = dict(zip(header.split(" | "), row.split(" | ")))
    assert cells["judge on own candidates (testbed)"].strip() == ""
