"""The variants: config checks and selection rules (fast), and each variant's defining behaviour in the
files of a real tiny round (slow; training in one plain process, evaluation off, to keep them short)."""

import json

import pytest

from selfreward.config import compose, group_options
from selfreward.data import load_seed
from selfreward.errors import ConfigError
from selfreward.pairs import build_pairs
from selfreward.resume import first_affected
from selfreward.round import round_stages
from selfreward.pairs import windowed_select, within_window
from selfreward.variants.consistency import agreeing
from selfreward.variants.meta import capped
from tests.helpers import SMALL, selfreward
from tests.test_pairs import cand, judg


def test_every_variant_composes_with_both_updates():
    assert group_options("variant") == ["base", "consistency", "cream", "length", "meta", "random", "seed_anchored",
                                        "self_consistency", "temporal"]
    for variant in group_options("variant"):
        for update in ("dpo", "sft"):
            if (variant, update) == ("temporal", "sft"):
                continue
            cfg = compose([f"variant={variant}", f"update={update}"])
            assert cfg.variant.name == variant
    assert compose(["variant=seed_anchored"]).prompts.seed_share == 0.25


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["variant=temporal", "update=sft"], "needs update=dpo"),
        (["variant=meta", "judge=logprob"], "judge.samples' >= 2"),
        (["variant=meta", "variant.meta_share=1.5"], "'variant.meta_share' must be in (0, 1)"),
        (["variant=consistency", "variant.second_judge=sampled"], "second judge that differs"),
        (["variant=length", "variant.rho=[]"], "'variant.rho'"),
        (["variant=seed_anchored", "prompts.seed_share=0"], "'prompts.seed_share' > 0"),
        (["variant=temporal", "variant.anchored_rejection=false", "variant.future_chosen=false"],
         "is variant=base"),
        (["variant=self_consistency", "variant.answer_pattern='#### .+'"], "needs a group around the answer"),
        (["variant=self_consistency", "variant.min_vote_share=2"], "'variant.min_vote_share' must be in"),
        (["variant=self_consistency", "update=sft", "generation.num_candidates=1"], "num_candidates' >= 2"),
        (["variant=cream", "judge.model=/some/judge"], "needs judge.model=null"),
        (["judge.method=oracle"], "needs recipe=testbed"),
        (["judge.reasoning=true"], "needs judge=logprob"),
        (["variant=nope"], "Valid choices: base, consistency, cream, length, meta, random, seed_anchored, "
                           "self_consistency, temporal"),
    ],
)
def test_bad_variant_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compose(overrides)


def names(cfg):
    return [s.name for s in round_stages(cfg)]


def test_round_stages_and_changed_variant_settings():
    assert names(compose([])) == ["prompts", "candidates", "judge", "pairs", "update", "evaluate"]
    assert "meta_judge" in names(compose(["variant=meta"]))
    temporal = names(compose(["variant=temporal"]))
    assert temporal[3:8] == ["anchor_candidates", "anchor_judge", "lookahead", "future_candidates", "future_judge"]
    no_anchor = names(compose(["variant=temporal", "variant.anchored_rejection=false"]))
    assert "anchor_candidates" not in no_anchor and "lookahead" in no_anchor
    assert first_affected("variant.rho") == "pairs"
    assert first_affected("variant.meta_share") == "pairs" and first_affected("variant.meta_template") == "meta_judge"
    assert first_affected("variant.name") == "judge"  # variant=random replaces the judge's scores
    assert "judge" not in names(compose(["variant=self_consistency"]))  # the votes rank the candidates
    assert "previous_judge" not in names(compose(["variant=cream"]))  # round 1: no judged previous model
    assert "previous_judge" in [s.name for s in round_stages(compose(["variant=cream"]), 2)]


def test_length_window_excludes_long_rejected():
    # scores: a-0 best and short; a-1 worst but far longer; a-2 mid and inside the window
    cands = [cand("a", 0, "x " * 10), cand("a", 1, "x " * 40), cand("a", 2, "x " * 12)]
    judgs = [judg("a", 0, 5.0), judg("a", 1, 1.0), judg("a", 2, 3.0)]
    lengths = {("a", 0): 10, ("a", 1): 40, ("a", 2): 12}
    (pair,), _ = build_pairs(cands, judgs, select=windowed_select(lengths, 0.5))
    assert (pair["chosen_id"], pair["rejected_id"]) == (0, 2)
    (base,), _ = build_pairs(cands, judgs)
    assert base["rejected_id"] == 1
    # rho = 0: only the shortest top response is inside, nothing to pair with
    pairs, drops = build_pairs(cands, judgs, select=windowed_select(lengths, 0.0))
    assert pairs == [] and drops["dropped_tie"] == 1
    rows = [{"prompt_id": "a", "candidate_id": i, "score": s} for i, s in ((0, 5.0), (1, 4.0), (2, 4.0))]
    assert [r["candidate_id"] for r in within_window(rows, lengths, 0.5)] == [0, 2]


def test_anchored_rejection_takes_the_other_models_worst():
    cands, judgs = [cand("a", i) for i in range(2)], [judg("a", 0, 4.0), judg("a", 1, 2.0)]
    anchor = [cand("a", i, f"old-{i}") for i in range(2)]
    (pair,), _ = build_pairs(cands, judgs, rejected_from=(anchor, [judg("a", 0, 3.0), judg("a", 1, 1.0)]))
    assert (pair["chosen"], pair["rejected"]) == ("a-0", "old-1")
    pairs, drops = build_pairs(cands, judgs, rejected_from=(anchor, [judg("a", 0, 5.0), judg("a", 1, 4.5)]))
    assert pairs == [] and drops == {"dropped_unscored": 0, "dropped_chosen_not_better": 1}


def test_future_chosen_without_anchor_rejects_m_t_own_worst(tmp_path):
    from selfreward.files import write_jsonl
    from selfreward.rundir import RunDir

    cfg = compose(["variant=temporal", "variant.anchored_rejection=false", f"run_dir={tmp_path}"])
    rd = RunDir(tmp_path)
    rd.round_dir(1).mkdir()
    write_jsonl(rd.output(1, "candidates"), [cand("a", 0, "mine good"), cand("a", 1, "mine bad")])
    write_jsonl(rd.output(1, "judge"), [judg("a", 0, 3.0), judg("a", 1, 1.0)])
    write_jsonl(rd.output(1, "future_candidates"), [cand("a", 0, "future best"), cand("a", 1, "future worst")])
    write_jsonl(rd.output(1, "future_judge"), [judg("a", 0, 5.0), judg("a", 1, 0.5)])
    (pair,), _ = cfg.variant.preference_pairs(cfg, rd, 1)
    assert (pair["chosen"], pair["chosen_from"]) == ("future best", "future_candidates")
    assert (pair["rejected"], pair["rejected_from"]) == ("mine bad", "candidates")


def test_consistency_keeps_only_agreeing_pairs():
    pairs = [{"prompt_id": p, "chosen_id": 0, "rejected_id": 1} for p in "abc"]
    second = [judg("a", 0, 4.0), judg("a", 1, 2.0), judg("b", 0, 2.0), judg("b", 1, 2.0), judg("c", 0, 1.0)]
    kept, dropped = agreeing(pairs, second)
    assert [p["prompt_id"] for p in kept] == ["a"] and dropped == 2


def test_consistency_sft_keeps_a_zero_score_at_threshold_zero(tmp_path):
    from selfreward.files import write_jsonl
    from selfreward.rundir import RunDir

    cfg = compose(["variant=consistency", "update=sft", "pairs.sft_threshold=0", f"run_dir={tmp_path}"])
    rd = RunDir(tmp_path)
    rd.round_dir(1).mkdir()
    write_jsonl(rd.output(1, "candidates"), [cand("a", 0), cand("a", 1)])
    write_jsonl(rd.output(1, "judge"), [judg("a", 0, 3.0), judg("a", 1, 2.0)])
    write_jsonl(rd.output(1, "second_judge"), [judg("a", 0, 0.0), judg("a", 1, None)])
    rows, drops = cfg.variant.sft_examples(cfg, rd, 1)
    assert [r["candidate_id"] for r in rows] == [0] and drops["dropped_judges_disagree"] == 1


def test_meta_cap_keeps_the_most_decisive():
    records = [{"prompt_id": "p", "candidate_id": i, "margin": m} for i, m in enumerate([0.1, 0.0, 0.3, 0.2])]
    # share 0.5 of all pairs with 2 response pairs: at most 2 judge pairs; a zero margin never counts
    assert [r["candidate_id"] for r in capped(records, 2, 0.5)] == [2, 3]
    assert capped(records, 4, 0.15) == []  # 0.15 * 4 / 0.85 < 1
    assert len(capped(records, 20, 0.15)) == 3


def test_meta_judge_writes_its_comparison_before_its_verdict_is_read(tiny_checkpoint):
    """The meta-judge reasons first (greedy), and the verdict's probabilities are read after that
    reasoning: the scoring prompt holds the reasoning, cut before its own "Better:"."""
    from selfreward.generation import load_generator
    from selfreward.judge import option_token_ids
    from selfreward.variants.meta import meta_judge

    gen = load_generator(compose(["generation.batch_size=4"]), str(tiny_checkpoint))
    calls = []
    real_generate, real_probs = gen.generate, gen.next_token_probs

    def generate(prompts, sampling, desc=""):
        calls.append(("generate", prompts, sampling))
        return [["Judgment 2 forgets the rubric's first point. Better: 1 because"] for _ in prompts]

    def next_token_probs(prompts, ids, desc=""):
        calls.append(("read", prompts))
        return real_probs(prompts, ids, desc)

    gen.generate, gen.next_token_probs = generate, next_token_probs
    try:
        item = {"prompt_id": "p", "candidate_id": 0, "prompt": "Capital of France?", "response": "Paris.",
                "judgments": ["Relevant and exact. Score: 5", "Wrong. Score: 1"]}
        (record,) = meta_judge(gen, compose(["variant=meta"]), [item], seed=0)
    finally:
        gen.generate, gen.next_token_probs = real_generate, real_probs
    assert [c[0] for c in calls] == ["generate", "read"] and calls[0][2].temperature == 0.0
    prefix, _ = option_token_ids(gen.tokenizer, "Better", ["1", "2"])  # "Better:" and what follows it
    for rendered, read in zip(calls[0][1], calls[1][1]):
        assert read == rendered + "Judgment 2 forgets the rubric's first point. " + prefix
    assert [c["reasoning"] for c in record["comparisons"]] == ["Judgment 2 forgets the rubric's first point."] * 2
    assert {record["chosen"], record["rejected"]} == set(item["judgments"])


def test_judge_pairs_longer_than_training_keeps_are_dropped_and_counted(tiny_checkpoint):
    """A judge pair cut at train.max_length would lose the judgment's score: it is dropped, counted."""
    from transformers import AutoTokenizer

    from selfreward.variants.meta import fitting

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    short = {"judge_prompt": "Rate: Paris.", "chosen": "Exact. Score: 5", "rejected": "Off. Score: 1"}
    long = {**short, "rejected": "Off topic. " * 200 + "Score: 1"}
    kept, dropped = fitting([short, long], tok, max_length=64)
    assert kept == [short] and dropped == 1


def test_meta_length_control_prefers_the_shortest_near_the_top():
    from selfreward.pairs import controlled_select, windowed_select

    # a-0 tops the scores but is long; a-2 is shorter within 0.25 of the range from the top
    cands = [cand("a", 0, "x " * 30), cand("a", 1, "x " * 10), cand("a", 2, "x " * 12), cand("a", 3, "x " * 20)]
    judgs = [judg("a", 0, 5.0), judg("a", 1, 1.0), judg("a", 2, 4.5), judg("a", 3, 3.0)]
    lengths = {("a", i): n for i, n in enumerate((30, 10, 12, 20))}
    (pair,), _ = build_pairs(cands, judgs, select=controlled_select(lengths, 0.25))
    assert (pair["chosen_id"], pair["rejected_id"]) == (2, 1)
    (pair,), _ = build_pairs(cands, judgs, select=controlled_select(lengths, 0.0))  # rho 0: the base rule
    assert (pair["chosen_id"], pair["rejected_id"]) == (0, 1)
    # inside a window of 0.5 around the shortest top-scored (30 tokens): a-0 and a-3 only
    (pair,), _ = build_pairs(cands, judgs, select=windowed_select(lengths, 0.5, controlled_select(lengths, 0.25)))
    assert (pair["chosen_id"], pair["rejected_id"]) == (0, 3)


# -- each variant on a real tiny round ---------------------------------------------------------------

FAST = ["recipe=tiny", *SMALL, "launch.accelerate_config=null", "eval.enabled=false"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_meta_adds_capped_judge_pairs(run_from_init):
    run_dir = run_from_init()
    selfreward("run", *FAST, "rounds=1", "variant=meta", "variant.meta_share=0.4", f"run_dir={run_dir}")
    r1 = run_dir / "round_1"
    pairs = rows(r1 / "pairs.jsonl")
    judge_pairs = [p for p in pairs if p["kind"] == "judge"]
    assert judge_pairs, "no judge pairs"
    assert len(judge_pairs) / len(pairs) <= 0.4
    judgments = {(j["prompt_id"], j["candidate_id"]): j["judgments"] for j in rows(r1 / "judgments.jsonl")}
    for p in judge_pairs:
        assert {p["chosen"], p["rejected"]} <= set(judgments[(p["prompt_id"], p["candidate_id"])])
        assert p["chosen"] != p["rejected"] and p["prompt"].startswith("Review the user's question")
    metrics = json.loads((r1 / "metrics.json").read_text())
    assert metrics["counts"]["judge_pairs"] == len(judge_pairs) and metrics["variant"] == "meta"
    update = json.loads((r1 / "manifest.json").read_text())["update"]
    assert update["records"] == len(pairs)  # judge and response pairs trained in the one update


@pytest.mark.slow
def test_temporal_rejects_from_m1_and_chooses_from_lookahead(run_from_init):
    run_dir = run_from_init()
    selfreward("run", *FAST, "rounds=2", "variant=temporal", f"run_dir={run_dir}")
    r2 = run_dir / "round_2"
    manifest = json.loads((r2 / "manifest.json").read_text())
    assert str(run_dir / "init" / "model") in manifest["anchor_candidates"]["inputs"]  # sampled by M1
    assert str(run_dir / "round_1" / "model") in manifest["candidates"]["inputs"]  # sampled by M2
    assert str(r2 / "lookahead" / "model") in manifest["future_candidates"]["inputs"]
    assert manifest["lookahead"]["records"] == len(rows(r2 / "lookahead" / "pairs.jsonl"))
    anchor = {c["response"] for c in rows(r2 / "anchor_candidates.jsonl")}
    future = {c["response"] for c in rows(r2 / "future_candidates.jsonl")}
    pairs = rows(r2 / "pairs.jsonl")
    assert pairs
    assert all(p["rejected"] in anchor and p["chosen"] in future for p in pairs)
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)


@pytest.mark.slow
def test_consistency_drops_pairs_the_second_judge_orders_otherwise(run_from_init):
    run_dir = run_from_init()
    selfreward("run", *FAST, "rounds=1", "variant=consistency", f"run_dir={run_dir}")
    r1 = run_dir / "round_1"
    base, _ = build_pairs(rows(r1 / "candidates.jsonl"), rows(r1 / "judgments.jsonl"))
    second = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in rows(r1 / "judgments_second.jsonl")}
    assert all(j["judgments"] == [] for j in rows(r1 / "judgments_second.jsonl"))  # the logprob judge
    agree = [p for p in base if second[(p["prompt_id"], p["chosen_id"])] > second[(p["prompt_id"], p["rejected_id"])]]
    kept = rows(r1 / "pairs.jsonl")
    assert base  # a round with pairs to keep or drop
    assert [(p["prompt_id"], p["chosen_id"], p["rejected_id"]) for p in kept] == [
        (p["prompt_id"], p["chosen_id"], p["rejected_id"]) for p in agree
    ]
    assert json.loads((r1 / "manifest.json").read_text())["pairs"]["dropped_judges_disagree"] == len(base) - len(kept)


@pytest.mark.slow
def test_length_pairs_stay_inside_the_window(run_from_init, tiny_checkpoint):
    from transformers import AutoTokenizer

    run_dir = run_from_init()
    selfreward("run", *FAST, "rounds=1", "variant=length", "variant.rho=[0.3]", f"run_dir={run_dir}")
    r1 = run_dir / "round_1"
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    length = {(c["prompt_id"], c["candidate_id"]): len(tokenizer(c["response"], add_special_tokens=False)["input_ids"])
              for c in rows(r1 / "candidates.jsonl")}
    scores = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in rows(r1 / "judgments.jsonl")}
    pairs = rows(r1 / "pairs.jsonl")
    assert pairs  # the window check below must have something to check
    for p in pairs:
        scored = [(k, s) for k, s in scores.items() if k[0] == p["prompt_id"] and s is not None]
        top = max(s for _, s in scored)
        shortest = min(length[k] for k, s in scored if s == top)
        for side in ("chosen_id", "rejected_id"):
            assert abs(length[(p["prompt_id"], p[side])] - shortest) <= 0.3 * shortest
    assert json.loads((r1 / "manifest.json").read_text())["pairs"]["length_rho"] == 0.3


@pytest.mark.slow
def test_seed_anchored_prompts_with_sft(run_from_init):
    run_dir = run_from_init()
    selfreward("run", *FAST, "rounds=1", "variant=seed_anchored", "prompts.seed_share=0.5", "update=sft",
               "pairs.sft_threshold=0", f"run_dir={run_dir}")
    r1 = run_dir / "round_1"
    prompts = rows(r1 / "prompts.jsonl")
    seeds = [p for p in prompts if p.get("source") == "seed"]
    assert len(prompts) == 6 and len(seeds) == 3
    assert {p["prompt"] for p in seeds} <= {r["instruction"] for r in load_seed(None, "ift")}
    assert {c["prompt_id"] for c in rows(r1 / "candidates.jsonl")} >= {p["id"] for p in seeds}
    assert (r1 / "sft.jsonl").is_file() and (r1 / "model").is_dir()


# -- the embedded default under the overrides users try first ----------------------------------------

# The shrunk default, with the recipe's judge budget: a judgment cut short of its "Score:" line does not
# parse, and SMALL's 64 tokens cut many of the tiny judge's explanations.
ROBUST = [a for a in FAST if not a.startswith("judge.max_new_tokens=")] + ["launch.in_process=true"]
OVERRIDES = [["update=sft"], ["judge=sampled"], ["judge=logprob"], ["variant=meta"],
             ["variant=temporal"], ["variant=consistency"], ["variant=length"], ["variant=seed_anchored"],
             ["variant=self_consistency"], ["variant=cream", "rounds=2"], ["rounds=3"]]


def _training_examples_every_round(run_dir, rounds):
    for t in range(1, rounds + 1):
        entry = json.loads((run_dir / f"round_{t}" / "manifest.json").read_text())["pairs"]
        assert entry["records"] >= 1 and not entry.get("skip_update"), (run_dir, t, entry)


@pytest.mark.slow
@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: " ".join(o))
def test_the_default_gets_training_data_every_round(run_from_init, override):
    run_dir = run_from_init()
    rounds = int(next((o.split("=")[1] for o in override if o.startswith("rounds=")), "1"))
    selfreward("run", *ROBUST, f"rounds={rounds}", *override, f"run_dir={run_dir}")
    _training_examples_every_round(run_dir, rounds)


@pytest.mark.slow
@pytest.mark.parametrize("override", ["seed=1", "seed=2", "seed=3", "seed=4", "lora.enabled=true"])
def test_the_default_gets_training_data_every_round_from_its_own_init(tmp_path, override):
    """Another seed (another random model and init) or LoRA (whose init trains full weights,
    lora.init=false in the tiny recipe: a random model learns nothing through an adapter alone)."""
    selfreward("run", *ROBUST, "rounds=2", override, f"run_dir={tmp_path / 'run'}")
    _training_examples_every_round(tmp_path / "run", 2)
