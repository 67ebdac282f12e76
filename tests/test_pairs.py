from selfreward.pairs import build_pairs, build_sft


def cand(pid, cid, text=None):
    return {"prompt_id": pid, "prompt": f"prompt {pid}", "candidate_id": cid, "response": text or f"{pid}-{cid}"}


def judg(pid, cid, score):
    return {"prompt_id": pid, "candidate_id": cid, "score": score, "scores": [score], "judgments": []}


def test_best_vs_worst():
    cands = [cand("a", i) for i in range(4)]
    judgs = [judg("a", 0, 3.0), judg("a", 1, 5.0), judg("a", 2, 1.0), judg("a", 3, 4.0)]
    pairs, drops = build_pairs(cands, judgs)
    assert pairs == [
        {
            "prompt_id": "a",
            "prompt": "prompt a",
            "chosen": "a-1",
            "rejected": "a-2",
            "score_chosen": 5.0,
            "score_rejected": 1.0,
            "chosen_id": 1,
            "rejected_id": 2,
            "kind": "response",
        }
    ]
    assert drops == {"dropped_unscored": 0}


def test_ties_go_to_lowest_candidate_id():
    cands = [cand("a", i) for i in range(4)]
    judgs = [judg("a", 0, 2.0), judg("a", 1, 5.0), judg("a", 2, 2.0), judg("a", 3, 5.0)]
    (pair,), _ = build_pairs(cands, judgs)
    assert (pair["chosen"], pair["rejected"]) == ("a-1", "a-0")


def test_all_equal_dropped():
    cands = [cand("a", i) for i in range(3)]
    pairs, drops = build_pairs(cands, [judg("a", i, 4.0) for i in range(3)])
    assert pairs == [] and drops["dropped_tie"] == 1


def test_fewer_than_two_parsed_scores_dropped():
    cands = [cand("a", i) for i in range(3)] + [cand("b", i) for i in range(2)]
    judgs = [judg("a", 0, 4.0), judg("a", 1, None), judg("a", 2, None), judg("b", 0, None), judg("b", 1, None)]
    pairs, drops = build_pairs(cands, judgs)
    assert pairs == []
    assert drops == {"dropped_too_few_scores": 1, "dropped_unscored": 1}


def test_unparsed_candidates_are_ignored_not_worst():
    cands = [cand("a", i) for i in range(3)]
    judgs = [judg("a", 0, 4.0), judg("a", 1, None), judg("a", 2, 2.0)]
    (pair,), _ = build_pairs(cands, judgs)
    assert (pair["chosen"], pair["rejected"]) == ("a-0", "a-2")


def test_min_margin():
    cands = [cand("a", i) for i in range(2)] + [cand("b", i) for i in range(2)]
    judgs = [judg("a", 0, 4.0), judg("a", 1, 3.5), judg("b", 0, 5.0), judg("b", 1, 1.0)]
    pairs, drops = build_pairs(cands, judgs, min_margin=1.0)
    assert [p["prompt_id"] for p in pairs] == ["b"] and drops["dropped_margin"] == 1


def test_pairs_follow_prompt_order():
    cands = [cand(p, i) for p in ("z", "a", "m") for i in range(2)]
    judgs = [judg(p, i, float(i)) for p in ("z", "a", "m") for i in range(2)]
    pairs, _ = build_pairs(cands, judgs)
    assert [p["prompt_id"] for p in pairs] == ["z", "a", "m"]


def test_sft_threshold_inclusive_and_skips_unscored():
    cands = [cand("a", i) for i in range(4)]
    judgs = [judg("a", 0, 4.0), judg("a", 1, 3.99), judg("a", 2, None), judg("a", 3, 5.0)]
    rows = build_sft(cands, judgs, {"Score": 4.0})
    assert [(r["response"], r["score"]) for r in rows] == [("a-0", 4.0), ("a-3", 5.0)]
    assert set(rows[0]) == {"prompt_id", "prompt", "response", "score", "named_scores", "candidate_id"}


def test_sft_needs_every_named_score_at_its_threshold():
    cands = [cand("a", i) for i in range(4)]
    named = [{"Quality": 9, "Following": 7}, {"Quality": 10, "Following": 6}, {"Quality": 7, "Following": 9},
             {"Quality": 8, "Following": None}]
    judgs = [{**judg("a", i, 8.0), "named_scores": n} for i, n in enumerate(named)]
    # the mean (8.0) clears both thresholds for all four; only candidate 0 clears each score's own
    rows = build_sft(cands, judgs, {"Quality": 8.0, "Following": 7.0})
    assert [r["candidate_id"] for r in rows] == [0]


def test_identical_texts_never_pair():
    # Two samples of one text scored apart by float noise, and a third text: the pair is the two texts.
    cands = [cand("a", 0, "Paris."), cand("a", 1, "Paris."), cand("a", 2, "Lyon.")]
    judgs = [judg("a", 0, 2.6931628250), judg("a", 1, 2.6931627982), judg("a", 2, 1.0)]
    (pair,), drops = build_pairs(cands, judgs)
    assert (pair["chosen"], pair["rejected"]) == ("Paris.", "Lyon.")
    # Only copies of one text: no pair, counted.
    pairs, drops = build_pairs(cands[:2], judgs[:2])
    assert pairs == [] and drops == {"dropped_unscored": 0, "dropped_same_text": 1}
