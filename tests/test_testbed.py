"""The ground-truth testbed: tasks and checkers, the data it writes, metrics against the checker,
and a shortened testbed run whose eval files are recomputed here from the checker."""

import json
import random
from functools import partial

import pytest

from selfreward import testbed, testbed_metrics
from selfreward.config import compose
from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.rundir import RunDir
from tests.helpers import selfreward


@pytest.mark.parametrize(
    "instruction, answer",
    [("reverse cabd", "dbac"), ("sort cabd", "abcd"), ("count a in abca", "2"), ("add 17 25", "42")],
)
def test_parse_and_check(instruction, answer):
    assert testbed.parse(instruction)[1] == answer
    assert testbed.check(instruction, answer) is True
    assert testbed.check(instruction, f" {answer}\n") is True  # surrounding whitespace is not an error
    assert testbed.check(instruction, answer + "a") is False


@pytest.mark.parametrize("text", ["reverse", "reverse ab cd", "Reverse abc", "add 1", "count ab in abc", "hello"])
def test_unparseable_instructions(text):
    assert testbed.parse(text) is None
    assert testbed.check(text, "x") is None


def test_corrupt_is_always_wrong():
    rng = random.Random(0)
    for answer in ("a", "abc", "aaaa", "0", "7", "42"):
        for _ in range(50):
            assert testbed.corrupt(rng, answer) != answer


def test_instances_are_distinct_and_take_turns():
    cfg = testbed.TestbedConfig(enabled=True)
    rows = testbed.instances(cfg, random.Random(1), 40, exclude=frozenset({testbed.key("sort abc")}))
    assert len({r["instruction"] for r in rows}) == 40
    assert [r["task"] for r in rows[:4]] == cfg.tasks
    assert all(testbed.check(r["instruction"], r["answer"]) for r in rows)
    assert not [r for r in rows if r["task"] == "sort" and r["answer"] == "abc"]


def test_the_schema_names_every_task_the_testbed_implements():
    from selfreward.schema import TESTBED_TASKS

    assert tuple(testbed.TASKS) == TESTBED_TASKS


def test_canonical_keys_join_instances_that_teach_one_answer():
    assert testbed.key("sort cab") == testbed.key("sort bca") != testbed.key("sort cabb")
    assert testbed.key("add 2 40") == testbed.key("add 40 2") != testbed.key("add 3 39")
    assert testbed.key("count a in aab") == testbed.key("count a in aba") != testbed.key("count b in aab")
    assert testbed.key("reverse abc") != testbed.key("reverse cba") and testbed.key("hello") is None


def test_metrics_on_a_hand_made_case():
    prompts = [{"prompt": "reverse abc"}, {"prompt": "sort cba"}, {"prompt": "add 2 3"}, {"prompt": "reverse ab"}]
    answers = ["cba", "abc", "6", "ab"]  # right, right, wrong, wrong
    eft = [
        {"instruction": "reverse abc", "response": "cba"},  # right, judged 0.9 -> said right
        {"instruction": "reverse abc", "response": "cab"},  # wrong, judged 0.6 -> said right (a judge error)
        {"instruction": "add 2 3", "response": "5"},  # right, judged 0.2 -> said wrong (an error)
        {"instruction": "add 2 3", "response": "6"},  # wrong, judged 0.2 -> said wrong; ties the right one
        {"instruction": "sort cba", "response": "abc"},  # right, unparsed score -> counted as said wrong
    ]
    scores = [0.9, 0.6, 0.2, 0.2, None]
    training = [
        {"prompt": "reverse abc", "chosen": "cba", "rejected": "abc", "kind": "response"},  # right / wrong
        {"prompt": "add 2 3", "chosen": "6", "rejected": "5", "kind": "response"},  # wrong / right
        {"prompt": "Judge this", "chosen": "Score: 1", "rejected": "Score: 0", "kind": "judge"},  # not counted
    ]
    m = testbed_metrics.metrics(prompts, answers, eft, scores, max_score=1, training=training)
    assert m["accuracy"] == 0.5
    assert m["judge_accuracy"] == 0.4  # items 1 and 4 right
    assert m["judge_pairwise_accuracy"] == 0.75  # reverse: 1, add: tie 0.5
    assert m["per_task"]["reverse"] == {"accuracy": 0.5, "judge_accuracy": 0.5}
    assert m["per_task"]["add"] == {"accuracy": 0.0, "judge_accuracy": 0.5}
    assert m["pair_precision"] == 0.5 and m["rejected_wrong"] == 0.5
    sft = testbed_metrics.metrics(prompts, answers, eft, scores, 1, training=[{"prompt": "add 2 3", "response": "5"}])
    assert sft["pair_precision"] == 1.0 and sft["rejected_wrong"] is None


def test_candidate_stats_on_a_hand_made_round():
    candidates = [
        {"prompt_id": "p0", "candidate_id": 0, "prompt": "sort cab", "response": "abc"},  # right, 0.9
        {"prompt_id": "p0", "candidate_id": 1, "prompt": "sort cab", "response": "abb"},  # wrong, 0.4
        {"prompt_id": "p0", "candidate_id": 2, "prompt": "sort cab", "response": "acc"},  # wrong, 0.9 (tie)
        {"prompt_id": "p1", "candidate_id": 0, "prompt": "add 1 1", "response": "3"},  # wrong, unscored
        {"prompt_id": "p1", "candidate_id": 1, "prompt": "add 1 1", "response": "2"},  # right, 0.1
    ]
    judgments = [{"prompt_id": c["prompt_id"], "candidate_id": c["candidate_id"], "score": s}
                 for c, s in zip(candidates, [0.9, 0.4, 0.9, None, 0.1])]
    stats = testbed_metrics.candidate_stats(candidates, judgments)
    # judge picks: p0's tie at 0.9 goes to the lower id (right), p1's only score is the right one;
    # votes: every answer once, so the first sampled wins (p0 right, p1 "3" wrong); own pairs: p0 1 and
    # a tie (0.5), p1's pair has an unparsed side and counts as wrong (0)
    assert stats == {"candidate_accuracy": 0.4, "candidate_best_of_n_accuracy": 1.0, "judge_own_pairwise_accuracy": 0.5,
                     "n_own_pairs": 3, "judge_pick_accuracy": 1.0, "vote_accuracy": 0.5,
                     "generation_verification_gap": 0.6}
    # an arm with no judge (self_consistency's votes) has no judge metrics, not a 0.5 made of ties
    unjudged = testbed_metrics.candidate_stats(candidates, [])
    assert unjudged["judge_own_pairwise_accuracy"] is None and unjudged["n_own_pairs"] is None
    assert unjudged["judge_pick_accuracy"] is None and unjudged["vote_accuracy"] == 0.5


def test_unparsed_judgments_count_as_wrong_everywhere():
    eft = [{"instruction": "add 2 3", "response": "5"}, {"instruction": "add 2 3", "response": "6"},
           {"instruction": "sort cba", "response": "abc"}, {"instruction": "sort cba", "response": "abb"}]
    # an unparsed score on a wrong answer is not a correct "wrong" verdict, nor a win for the right one
    m = testbed_metrics.metrics([], [], eft, [0.9, 0.1, 0.8, None], max_score=1)
    assert m["judge_accuracy"] == 0.75 and m["judge_pairwise_accuracy"] == 0.5 and m["judge_parsed"] == 0.75


def test_write_keeps_truth_out_of_training(tmp_path):
    cfg = compose(["recipe=testbed", f"run_dir={tmp_path}", "testbed.n_ift=40", "testbed.n_eft=40",
                   "testbed.n_heldout=20", "testbed.n_self_instruct=5"])
    rd = RunDir(tmp_path)
    cfg = testbed.attach(cfg, rd)
    testbed.write(cfg, rd)
    files = {k: read_jsonl(p) for k, p in rd.testbed_files.items()}
    heldout = {r["prompt"] for r in files["heldout_prompts"]}
    assert len(heldout) == 20 and all("answer" not in r for r in files["heldout_prompts"])
    train = {r["instruction"] for r in files["ift"] if r["kind"] == "task"} | {r["instruction"] for r in files["eft"]}
    assert not heldout & train
    # disjoint by what an instance teaches, not only as strings: no held-out sorted answer is trained on
    assert not {testbed.key(p) for p in heldout} & {testbed.key(i) for i in train}
    demos = [r for r in files["ift"] if r["kind"] == "self_instruct"]
    assert len(demos) == 5 and all(testbed.parse(d["response"]) for d in demos)
    for r in files["eft"] + files["heldout_eft"]:  # the judgment says what the checker says
        assert r["judgment"] == f"Score: {1 if testbed.check(r['instruction'], r['response']) else 0}"
    # the held-out set does not depend on the run seed; the training data does
    other = compose(["recipe=testbed", f"run_dir={tmp_path / 'b'}", "seed=1", "testbed.n_ift=40",
                     "testbed.n_eft=40", "testbed.n_heldout=20", "testbed.n_self_instruct=5"])
    rd_b = RunDir(tmp_path / "b")
    testbed.write(testbed.attach(other, rd_b), rd_b)
    assert read_jsonl(rd_b.testbed_files["heldout_prompts"]) == files["heldout_prompts"]
    assert read_jsonl(rd_b.testbed_files["ift"]) != files["ift"]


def test_testbed_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="testbed.tasks.*Valid choices: reverse, sort, count, add"):
        compose(["recipe=testbed", "testbed.tasks=[reverse,multiply]"])
    with pytest.raises(ConfigError, match="leave data.ift_path unset"):
        ift = tmp_path / "ift.jsonl"
        ift.write_text('{"instruction": "a", "response": "b"}\n')
        testbed.attach(compose(["recipe=testbed", f"data.ift_path={ift}"]), RunDir(tmp_path))


def test_prompts_the_checker_cannot_parse_are_dropped_and_counted():
    from selfreward.prompts import generate_prompts
    from selfreward.schema import PromptsConfig
    from tests.test_prompts import EchoTokenizer, ScriptedGenerator

    gen = ScriptedGenerator(["reverse abc", "Task: sort cab", "reverse the word abc", "add 1", "sort hgf",
                             "sort ab", "count a in aab"])
    gen.tokenizer = EchoTokenizer()
    cfg = PromptsConfig(num_prompts=3, max_attempts=3, min_words=2, max_words=5, num_shots=1)
    heldout = frozenset({testbed.key("sort fgh")})  # "sort hgf" teaches a held-out answer
    reject = partial(testbed.why_not_a_task, cfg=testbed.TestbedConfig(enabled=True), heldout=heldout)
    records, stats = generate_prompts(gen, cfg, ["sort abc"], seed=0, reject=reject)
    assert [r["prompt"] for r in records] == ["reverse abc", "sort cab", "count a in aab"]
    assert stats["dropped_unparseable"] == 2 and stats["dropped_out_of_range"] == 1
    assert stats["dropped_heldout"] == 1


def test_self_instruct_demonstrations_are_not_seed_tasks(tmp_path):
    from selfreward.data import seed_instructions

    cfg = compose(["recipe=testbed", f"run_dir={tmp_path}", "testbed.n_ift=12", "testbed.n_eft=8",
                   "testbed.n_heldout=8", "testbed.n_self_instruct=3"])
    cfg = testbed.attach(cfg, RunDir(tmp_path))
    testbed.write(cfg, RunDir(tmp_path))
    seeds = seed_instructions(cfg)
    assert len(seeds) == 12 and all(testbed.parse(s) for s in seeds)


@pytest.mark.slow
def test_shortened_testbed_run_measures_against_the_checker(tmp_path):
    run_dir = tmp_path / "tb"
    selfreward("run", "recipe=testbed", f"run_dir={run_dir}", "rounds=1", "init.max_steps=40",
               "testbed.tasks=[reverse,sort,count,add]",
               "testbed.n_ift=200", "testbed.n_eft=200", "testbed.n_heldout=24", "testbed.n_self_instruct=20",
               "prompts.num_prompts=12", "prompts.seed_share=0.5", "pairs.min_margin=0", "judge.max_mode_share=1.0")
    rd = RunDir(run_dir)
    init, round1 = json.loads((rd.init_dir / "eval.json").read_text()), json.loads(
        (rd.round_dir(1) / "eval.json").read_text())
    prompts = read_jsonl(rd.testbed_files["heldout_prompts"])
    for ev, folder in ((init, rd.init_dir), (round1, rd.round_dir(1))):
        answers = {r["id"]: r["response"] for r in read_jsonl(folder / "eval_responses.jsonl")}
        truth = [bool(testbed.check(p["prompt"], answers[p["id"]])) for p in prompts]
        assert ev["testbed"]["accuracy"] == round(sum(truth) / len(truth), 4)
        assert ev["testbed"]["n_judged"] == 2 * len(prompts)
        assert set(ev["testbed"]["per_task"]) == {"reverse", "sort", "count", "add"}
    pairs = [p for p in read_jsonl(rd.output(1, "pairs")) if p["kind"] == "response"]
    if pairs:
        right = [bool(testbed.check(p["prompt"], p["chosen"])) for p in pairs]
        assert round1["testbed"]["pair_precision"] == round(sum(right) / len(right), 4)
    else:  # no pair: the precision does not apply, and is absent rather than a number
        assert round1["testbed"]["pair_precision"] is None
    # a 40-step model writes few usable tasks: half the prompts are seed tasks, and any it wrote parse
    written = read_jsonl(rd.output(1, "prompts"))
    assert written and all(testbed.parse(p["prompt"]) for p in written)
    metrics = json.loads((rd.round_dir(1) / "metrics.json").read_text())["eval"]
    assert metrics["testbed_m1_accuracy"] == init["testbed"]["accuracy"]
    assert metrics["testbed_accuracy_gain"] == round(round1["testbed"]["accuracy"] - init["testbed"]["accuracy"], 4)


def _fake_round(run_dir, t, accuracy, m1_accuracy):
    """The part of a round's metrics.json the report reads, for a testbed run."""
    path = run_dir / f"round_{t}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "round": t, "counts": {"prompts": 8, "pairs": 4},
        "judge": {"judgment_parse_failure_rate": 0.0, "mode_share": 0.5, "score_histogram": {"0": 3, "1": 5}},
        "lengths_tokens": {"all": 5.0, "chosen": 5.0, "rejected": 6.0}, "training": {"train_loss": 0.6},
        "eval": {"judge_pairwise_accuracy": 0.8, "testbed_accuracy": accuracy, "testbed_judge_accuracy": 0.9,
                 "testbed_m1_accuracy": m1_accuracy, "testbed_m1_judge_accuracy": 0.85,
                 "testbed_accuracy_gain": round(accuracy - m1_accuracy, 4), "testbed_pair_precision": 0.7},
    }))
    (run_dir / "config.yaml").write_text("run_dir: x\n")


def test_report_states_the_gain_over_m1_per_update(tmp_path):
    from selfreward.report import report

    runs = []
    for update, finals in (("dpo", (0.6, 0.7)), ("sft", (0.5, 0.5))):
        for seed, final in enumerate(finals):
            run_dir = tmp_path / f"update={update},seed={seed}"
            _fake_round(run_dir, 1, 0.55, 0.5)
            _fake_round(run_dir, 2, final, 0.5)
            runs.append({"name": run_dir.name, "overrides": {"update": update, "seed": str(seed)},
                         "run_dir": str(run_dir), "status": "done"})
    (tmp_path / "sweep.json").write_text(json.dumps({"fixed": [], "swept": ["update", "seed"], "runs": runs}))
    text = report([str(tmp_path)]).read_text()
    # dpo: gains 0.1 and 0.2 -> +15.0 points ± the sample sd (n - 1): sqrt(2 * 5.0**2 / 1) = 7.1; sft: 0.0 and 0.0
    assert "- update=dpo: +15.0 ± 7.1 points after round 2 (2 runs)" in text
    assert "- update=sft: +0.0 ± 0.0 points after round 2 (2 runs)" in text
    (tmp_path / "fewer").mkdir()  # an arm with one run: no sd, and one run is not "runs"
    (tmp_path / "fewer" / "sweep.json").write_text(json.dumps({"runs": runs[:3]}))
    fewer = report([str(tmp_path / "fewer")]).read_text()
    assert "- update=sft: +0.0 ± – points after round 2 (1 run)" in fewer
    assert "accuracy gain vs M1 (testbed)" in text.splitlines()[6]  # the table's first column after runs
    one = report([str(tmp_path / "update=dpo,seed=0")]).read_text()
    assert "| 0 | 0.50 | – | 0.85 |" in one and "| 2 | 0.60 | – | 0.90 |" in one  # round 0 is M1


def test_too_small_a_task_family_is_a_config_error():
    cfg = testbed.TestbedConfig(enabled=True, tasks=["sort"], alphabet="ab", min_len=1, max_len=2)
    with pytest.raises(ConfigError, match="cannot draw 50 distinct task instances"):
        testbed.instances(cfg, random.Random(0), 50)  # only 6 words exist


FROZEN_HELDOUT_V1 = {  # sha256[:16] of the held-out files as published (testbed.heldout_version=1)
    (): ("626f9fd6489db4ed", "836647bf4f8d8d26"),
    ("testbed.tasks=[pair]", "judge.reasoning=true"): ("d213c3ba38944c56", "d75590b9db3e07bf"),
    ("testbed.tasks=[reverse,sort,count,add,pair]",): ("cf457fa412bece67", "0840b61382ca9d0a"),
}


def _heldout_and_eft(tmp_path, extra) -> tuple[tuple[str, str], bytes]:
    import hashlib

    cfg = compose(["recipe=testbed", f"run_dir={tmp_path}", "testbed.n_ift=40", "testbed.n_eft=40", *extra])
    rd = RunDir(tmp_path)
    testbed.write(cfg, rd)
    f = rd.testbed_files
    digest = tuple(hashlib.sha256(f[k].read_bytes()).hexdigest()[:16] for k in ("heldout_prompts", "heldout_eft"))
    return digest, f["eft"].read_bytes()


@pytest.mark.parametrize("extra", list(FROZEN_HELDOUT_V1))
def test_the_published_heldout_set_is_frozen(tmp_path, extra):
    """A held-out set once published never changes (a new one is a new `testbed.heldout_version`)."""
    assert _heldout_and_eft(tmp_path, extra)[0] == FROZEN_HELDOUT_V1[extra]


def test_training_corruptions_can_change_without_touching_the_heldout_set(tmp_path, monkeypatch):
    from dataclasses import replace

    extra = ("testbed.tasks=[reverse,sort,count,add,pair]",)
    before, eft_before = _heldout_and_eft(tmp_path / "a", extra)
    monkeypatch.setattr(testbed, "corrupt", lambda rng, answer, task="": answer + "x")
    monkeypatch.setitem(testbed.TASKS, "pair", replace(testbed.TASKS["pair"], wrong=lambda n, t, rng, a: "0 0"))
    after, eft_after = _heldout_and_eft(tmp_path / "b", extra)
    assert eft_after != eft_before  # the training side did change
    assert after == before == FROZEN_HELDOUT_V1[extra]


def test_an_unknown_heldout_version_is_refused():
    with pytest.raises(ConfigError, match="testbed.heldout_version"):
        compose(["recipe=testbed", "testbed.heldout_version=2"])


def test_the_schema_names_every_heldout_version_the_testbed_implements():
    from selfreward.choices import HELDOUT_VERSIONS

    assert tuple(testbed.HELDOUT_WRONG) == HELDOUT_VERSIONS


def test_the_reports_pair_table_sorts_pairs_by_the_checkers_verdict(tmp_path):
    from selfreward.files import write_jsonl
    from selfreward.report_testbed import pair_table

    run = tmp_path / "run"
    sides = [("abc", "acb"), ("acb", "abc"), ("abc", "abc"), ("bca", "cab a b")]  # right, wrong, both pass, both fail
    write_jsonl(run / "round_1" / "pairs.jsonl",
                [{"prompt_id": f"p{i}", "prompt": "sort cab", "chosen": c, "rejected": r} for i, (c, r) in enumerate(sides)])
    header, _, row = pair_table({"arm": [run], "sft arm": [tmp_path / "no_pairs"]})
    assert header.startswith("| setting | pairs a round | right")
    assert row == "| arm | 4.0 | 0.25 | 0.25 | 0.25 | 0.25 | 0.50 | -0.5 |"
