"""The real-model testbed's data and metrics without a model: the frozen held-out set, seed prompts,
constraints on self-written prompts, the class-balanced EFT set, the config's checks, the metrics'
trained / held-out split, and one M1 for a sweep's seeds and arms. (A shortened run on SmolLM2 itself, with its
real files, is in tests/test_smollm2.py.)"""

import json
import random

import pytest

from selfreward import constraints, testbed, testbed_metrics
from selfreward import testbed_constraints as tc
from selfreward.config import compose
from selfreward.errors import ConfigError
from selfreward.files import file_sha256
from selfreward.sweep import init_key

RECIPE = "recipe=testbed_smollm2"


def test_the_published_heldout_set_is_frozen():
    """A held-out version never changes: its files hash to the recorded values, and every label is
    what the checker says of the sample."""
    for version, hashes in tc.HELDOUT_SHA256.items():
        for name, sha in hashes.items():
            assert file_sha256(tc.FROZEN / f"v{version}" / name) == sha, f"v{version}/{name} changed"
        prompts, judged = tc.heldout(version)
        assert {p["task"] for p in prompts} == set(constraints.FAMILY)
        assert all(constraints.check(r["instruction"], r["response"]) == bool(r["score"]) for r in judged)
        assert {r["instruction"] for r in judged} <= {p["prompt"] for p in prompts}


def test_heldout_topics_never_reach_training():
    seeds = tc.seed_prompts(len(tc.TRAIN_TOPICS) * len(tc.ASKS), seed=1234)
    held = {t.replace("-", " ") for t in tc.HELDOUT_TOPICS}
    assert not set(tc.TRAIN_TOPICS) & set(tc.HELDOUT_TOPICS)
    assert not any(t in s for s in seeds for t in held)
    prompts, _ = tc.heldout(1)
    assert all(p["topic"] in tc.HELDOUT_TOPICS for p in prompts)


def test_seed_prompts_are_distinct_and_fixed():
    a, b = tc.seed_prompts(50, seed=7), tc.seed_prompts(50, seed=7)
    assert a == b and len(set(a)) == 50 and a != tc.seed_prompts(50, seed=8)
    with pytest.raises(ConfigError, match="testbed.n_ift"):
        tc.seed_prompts(10_000, seed=0)


def test_self_written_prompts_get_a_trained_constraint():
    records = [{"id": f"p{i:05d}", "prompt": f"Write about volcano number {i}."} for i in range(40)]
    types = ["no_commas", "bullets"]
    out = tc.constrain_prompts(records, types, seed=3)
    assert out == tc.constrain_prompts(records, types, seed=3)  # a rerun of the stage draws the same
    assert {r["constraint"] for r in out} == set(types)
    for r, o in zip(records, out):
        assert o["prompt"].startswith(r["prompt"]) and constraints.parse(o["prompt"])[0].name == o["constraint"]
        assert testbed.task_name(o["prompt"]) == o["constraint"]
    assert tc.why_not_a_prompt("Describe tides. Do not use any commas.") == "constrained"
    assert tc.why_not_a_prompt("Tell me why it is so.") == "no_topic"
    assert tc.why_not_a_prompt("Explain how glaciers move.") is None


def test_eft_set_is_class_balanced():
    rows = [{"score": int(i % 3 == 0), "i": i} for i in range(30)]
    out = tc.balanced(rows, 100, random.Random(0))
    assert sum(r["score"] for r in out) == len(out) / 2 == 10
    assert len(tc.balanced(rows, 6, random.Random(0))) == 6
    with pytest.raises(ConfigError, match="all failing"):
        tc.balanced([{"score": 0}] * 4, 4, random.Random(0))


def test_eft_judgments_name_the_check():
    prompt = "Write a short paragraph about tides. Do not use any commas."
    response = "Tides rise and fall twice a day, pulled by the moon."
    assert tc.judgment(prompt, response, 0, reasoning=False) == "Score: 0"
    assert tc.judgment(prompt, response, 0, reasoning=True) == "Check: 1 comma, on topic. Score: 0"
    assert tc.judgment(prompt, "ok", 0, reasoning=True) == "Check: 0 commas, too short. Score: 0"


@pytest.mark.parametrize("name", list(constraints.FAMILY))
def test_every_type_explains_its_check(name):
    prompt = constraints.constrain("Write a short paragraph about glaciers.", name, random.Random(0))
    assert tc.judgment(prompt, "Glaciers move slowly down their valleys over many years.", 1, True).startswith("Check: ")


def test_heldout_subset_takes_types_in_turn():
    prompts, judged = tc.heldout_subset(1, ["bullets", "title", "max_words"], 5)
    assert sorted(p["task"] for p in prompts) == ["bullets", "bullets", "max_words", "title", "title"]
    assert {r["instruction"] for r in judged} <= {p["prompt"] for p in prompts}


@pytest.mark.parametrize("override, message", [
    ("testbed.tasks=[no_commas,sort]", "Unknown choice \\['sort'\\] for 'testbed.tasks'"),
    ("testbed.heldout_tasks=[bogus]", "Unknown choice \\['bogus'\\] for 'testbed.heldout_tasks'"),
    ("testbed.heldout_tasks=[no_commas]", "share \\['no_commas'\\]"),
    ("judge.max_score=5", "judge.max_score=1"),
    ("testbed.heldout_version=2", "testbed.heldout_version"),
    ("testbed.n_eft=1", "testbed.n_eft"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        compose([RECIPE, override])


def test_heldout_tasks_need_the_constraint_family():
    with pytest.raises(ConfigError, match="testbed.heldout_tasks"):
        compose(["recipe=testbed", "testbed.heldout_tasks=[sort]"])


def test_metrics_report_trained_and_heldout_types_apart():
    comma, bullets = ("Write a short paragraph about tides. Do not use any commas.",
                      'Describe glaciers. Answer with exactly 2 bullet points, each line starting with "* ".')
    good_comma, bad_comma = "Tides rise and fall twice a day with the moon.", "Tides rise, and fall, with the moon."
    good_bullets = "* Glaciers are rivers of ice\n* Glaciers carve valleys slowly"
    prompts = [{"id": "a", "prompt": comma}, {"id": "b", "prompt": comma}, {"id": "c", "prompt": bullets}]
    out = testbed_metrics.metrics(prompts, [good_comma, bad_comma, good_bullets], [], [], 1, heldout_types=frozenset({"bullets"}))
    assert out["accuracy"] == 0.5 and out["heldout_types_accuracy"] == 1.0
    assert out["per_task"]["bullets"]["accuracy"] == 1.0
    assert out["mean_words"] == pytest.approx((10 + 8 + 10) / 3, abs=0.01)
    sampled = testbed_metrics.sampled_metrics(prompts, [[bad_comma, good_comma], [bad_comma, bad_comma], [good_bullets] * 2],
                                      votes=False, heldout_types=frozenset({"bullets"}))
    assert sampled == {"sampled_accuracy": 0.25, "best_of_n_accuracy": 0.5}  # no majority vote on free text
    candidates = [{"prompt_id": "a", "prompt": comma, "candidate_id": i, "response": r}
                  for i, r in enumerate([bad_comma, good_comma])]
    judged = [{"prompt_id": "a", "candidate_id": i, "score": s} for i, s in enumerate([0.2, 0.9])]
    own = testbed_metrics.candidate_stats(candidates, judged, votes=False)
    assert "vote_accuracy" not in own
    assert own["judge_pick_accuracy"] == 1.0 and own["generation_verification_gap"] == 0.5
    assert own["candidate_best_of_n_accuracy"] == 1.0


def test_one_m1_serves_every_seed_and_arm_of_a_sweep():
    """With init.seed set, the run seed does not shape M1 (the constraint data do not depend on it),
    nor does the arm; the init settings do. The string testbed's data depend on the run seed."""
    key = init_key(compose([RECIPE]))
    assert init_key(compose([RECIPE, "seed=5"])) == key
    assert init_key(compose([RECIPE, "variant=random", "judge.method=oracle"])) == key
    assert init_key(compose([RECIPE, "init.learning_rate=1e-4"])) != key
    assert init_key(compose([RECIPE, "init.seed=null", "seed=5"])) != init_key(compose([RECIPE, "init.seed=null"]))
    assert init_key(compose(["recipe=testbed", "init.seed=0", "seed=5"])) != init_key(compose(["recipe=testbed", "init.seed=0"]))


def test_a_model_named_by_its_selfreward_name_shares_its_init(tmp_path, monkeypatch):
    """A run's frozen config holds the fetched checkpoint's path where the recipe says the name: the
    sweep's init key treats both alike (it never matched before, and every seed trained its own M1)."""
    from selfreward.models import cached

    monkeypatch.setenv("SELFREWARD_CACHE", str(tmp_path))
    cached("smollm2-135m-instruct").mkdir(parents=True)
    assert init_key(compose([RECIPE, f"model.name_or_path={cached('smollm2-135m-instruct')}", "seed=3"])) == \
        init_key(compose([RECIPE]))


def test_the_report_gives_each_m1_and_each_judge_its_own_row(tmp_path):
    """The M1 table pools runs only where they start from the same M1 and measure its judging the same
    way: arms sharing M1 and the logprob judge are one row, the sampled judge (same M1) another, the
    reasoning judge (its own M1) a third; the per-type table gives each M1 its own row."""
    from selfreward.config import to_yaml
    from selfreward.files import write_json
    from selfreward.report import m1_table
    from selfreward.report_testbed import type_table

    arms = {"variant=base": [], "judge=sampled": ["judge=sampled"], "judge.reasoning=true": ["judge.reasoning=true"],
            "judge.method=oracle (ceiling: the checker's rewards, not self-rewarding)": ["judge.method=oracle"]}
    groups, dirs, first = {}, {}, tmp_path / "variant=base,seed=0"
    for i, (label, overrides) in enumerate(arms.items()):
        d = tmp_path / f"{label.split(' ')[0]},seed=0"
        (d / "init").mkdir(parents=True)
        (d / "config.yaml").write_text(to_yaml(compose([RECIPE, *overrides, f"run_dir='{d}'"])))
        # the oracle's M1 came from the sampled arm's, which had it from base's: still base's M1
        source = {"judge=sampled": first, "judge.method=oracle": tmp_path / "judge=sampled,seed=0"}.get(label.split(" ")[0])
        shared = {"shared_from": str(source)} if source else {}
        write_json(d / "init" / "manifest.json", {"init": {"records": 1, **shared}})
        accuracy = 0.5 if "reasoning" in label else 0.25
        write_json(d / "init" / "eval.json", {"testbed": {"per_task": {t: {"accuracy": accuracy} for t in
                   ["max_words", "min_words", "include_keyword", "keyword_frequency", "no_commas", "lowercase",
                    "bullets", "title", "exclude_keyword", "paragraphs", "end_phrase", "postscript"]}}})
        (d / "round_1").mkdir()
        write_json(d / "round_1" / "eval.json", json.loads((d / "init" / "eval.json").read_text()))
        groups[label] = [[{"eval": {"testbed_m1_accuracy": accuracy, "testbed_m1_heldout_judge_pick_accuracy": i / 10}}]]
        dirs[label] = [d]
    (tmp_path / "variant=base,seed=0" / "testbed").mkdir()
    (tmp_path / "variant=base,seed=0" / "testbed" / "heldout_prompts.jsonl").write_text('{"task": "title"}\n')

    table = m1_table(groups, dirs, ["held-out accuracy, greedy (testbed)", "judge's pick, held-out (testbed)"])
    assert table[0] == "| M1 of | its judge | runs | held-out accuracy, greedy (testbed) | judge's pick, held-out (testbed) |"
    assert table[2:] == [
        "| variant=base, judge.method=oracle | logprob | 2 | 0.250 ± 0.000 | 0.150 ± 0.212 |",
        "| judge=sampled | sampled (3 judgments) | 1 | 0.250 ± – | 0.100 ± – |",
        "| judge.reasoning=true | logprob after its own check | 1 | 0.500 ± – | 0.200 ± – |",
    ]
    m1_rows = [line.split(" | ")[:3] for line in type_table(dirs) if line.startswith("| M1")]
    assert m1_rows == [["| M1 of variant=base, judge=sampled, judge.method=oracle", "3", "0.250"],
                       ["| M1 of judge.reasoning=true", "1", "0.500"]]
