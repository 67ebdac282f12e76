"""The testbed's metrics against its checker (`selfreward.testbed.check`): held-out accuracy greedy and
sampled, best of N and the majority vote, the judge's accuracy on labelled examples, and how right a
round's training data and its own candidates' judgments were. `selfreward.evaluate` writes them into
eval.json."""

from __future__ import annotations

from selfreward.pairs import unflipped
from selfreward.stats import pair_outcome
from selfreward.testbed import check, task_name
from selfreward.variants.votes import majority, tally


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def metrics(prompts: list[dict], answers: list[str], eft: list[dict], judge_scores: list[float | None],
            max_score: float, training: list[dict] | None = None, heldout_types: frozenset = frozenset()) -> dict:
    """Held-out metrics against the checker.

    accuracy: greedy answers to `prompts` that are correct, over the trained types (`heldout_types`,
    never trained on, give heldout_types_accuracy beside it); mean_words: their length; judge_accuracy: held-out EFT items whose
    judge score is on the right side of the scale's midpoint (unparsed = wrong); judge_pairwise_accuracy:
    instances with a correct and a wrong answer where the correct one scores higher (ties count half,
    unparsed = wrong: `stats.pair_outcome`); judge_parsed: the share of EFT items whose score parsed;
    `training` (the round's pairs or SFT set): pair_precision = chosen (kept) responses that are correct,
    rejected_wrong = rejected responses that are wrong."""
    right = [bool(check(p["prompt"], a)) for p, a in zip(prompts, answers)]
    truth = [bool(check(e["instruction"], e["response"])) for e in eft]
    said = [None if s is None else s >= max_score / 2 for s in judge_scores]  # None never equals a truth
    by_instance: dict[str, dict[bool, float | None]] = {}
    for e, t, s in zip(eft, truth, judge_scores):
        by_instance.setdefault(e["instruction"], {})[t] = s
    pairwise = [pair_outcome(d[True], d[False]) for d in by_instance.values() if len(d) == 2]
    prompt_task = [task_name(p["prompt"]) for p in prompts]
    eft_task = [task_name(e["instruction"]) for e in eft]
    per_task = {name: {"accuracy": _share([r for r, n in zip(right, prompt_task) if n == name]),
                       "judge_accuracy": _share([s == t for s, t, n in zip(said, truth, eft_task) if n == name])}
                for name in dict.fromkeys(prompt_task)}
    out = {
        "accuracy": _share([r for r, n in zip(right, prompt_task) if n not in heldout_types]),
        **({"heldout_types_accuracy": _share([r for r, n in zip(right, prompt_task) if n in heldout_types])}
           if heldout_types else {}),
        "mean_words": round(sum(len(a.split()) for a in answers) / len(answers), 2) if answers else None,
        "judge_accuracy": _share([s == t for s, t in zip(said, truth)]),
        "judge_pairwise_accuracy": round(sum(pairwise) / len(pairwise), 4) if pairwise else None,
        "judge_parsed": _share([s is not None for s in judge_scores]),
        "n_prompts": len(prompts),
        "n_judged": len(eft),
        "per_task": per_task,
    }
    if training is not None:
        # response pairs only (not judge pairs), as the judge ordered them (a variant may flip some)
        rows = [unflipped(r) for r in training if r.get("kind", "response") == "response"]
        out["pair_precision"] = _share([bool(check(r["prompt"], r.get("chosen", r.get("response")))) for r in rows])
        rejected = [not check(r["prompt"], r["rejected"]) for r in rows if "rejected" in r]
        out["rejected_wrong"] = _share(rejected)
    return out


def candidate_stats(candidates: list[dict], judgments: list[dict], pattern: str | None = None,
                    votes: bool = True) -> dict:
    """On the round's own prompts, against the checker:
    - candidate_accuracy: sampled candidates that are correct (pass@1 at the round's temperature);
    - judge_own_pairwise_accuracy: how often the judge scores a correct candidate above a wrong one of
      the same prompt (ties half): pair quality rests on this, the judge meeting the model's own mistakes;
    - judge_pick_accuracy: prompts whose top-scored candidate is correct; vote_accuracy: prompts whose
      most-voted answer is correct (TTRL's label accuracy; `pattern` extracts the answers; absent
      without `votes`: free text has no answer to vote on);
    - candidate_best_of_n_accuracy: prompts where some candidate is correct (the ceiling of any pick);
    - generation_verification_gap: the better of the two picks minus candidate_accuracy. A model
      improves itself only where it checks better than it produces ("Mind the Gap", arXiv 2412.02674):
      this is how much better, on its own samples."""
    score = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in judgments}
    groups: dict[str, dict[bool, list[float | None]]] = {}
    best: dict[str, tuple[float, int, bool]] = {}
    right = []
    for c in candidates:
        ok = bool(check(c["prompt"], c["response"]))
        right.append(ok)
        s = score.get((c["prompt_id"], c["candidate_id"]))
        groups.setdefault(c["prompt_id"], {True: [], False: []})[ok].append(s)
        if s is not None and (c["prompt_id"] not in best or (s, -c["candidate_id"]) > best[c["prompt_id"]][:2]):
            best[c["prompt_id"]] = (s, -c["candidate_id"], ok)
    # no judgments at all (a variant that ranks by votes): the judge's metrics do not apply
    wins = [pair_outcome(a, b) for g in groups.values() for a in g[True] for b in g[False]] if judgments else []
    prompt_of = {c["prompt_id"]: c["prompt"] for c in candidates}
    voted = [check(prompt_of[pid], top[0]) for pid, g in tally(candidates, pattern).items()
             if (top := majority(g)) is not None] if votes else []
    sampled, pick, vote = _share(right), _share([ok for _, _, ok in best.values()]), _share([bool(v) for v in voted])
    picks = [p for p in (pick, vote) if p is not None]
    return {"candidate_accuracy": sampled,
            "candidate_best_of_n_accuracy": _share([bool(g[True]) for g in groups.values()]),
            "judge_own_pairwise_accuracy": round(sum(wins) / len(wins), 4) if wins else None,
            "n_own_pairs": len(wins) if judgments else None,
            "judge_pick_accuracy": pick,
            **({"vote_accuracy": vote} if votes else {}),
            "generation_verification_gap": round(max(picks) - sampled, 4) if picks and sampled is not None else None}


def sampled_metrics(prompts: list[dict], samples: list[list[str]], pattern: str | None = None, votes: bool = True,
                    heldout_types: frozenset = frozenset()) -> dict:
    """Held-out, over the trained types: sampled_accuracy (the mean over N samples of being correct:
    pass@1 at the sampling temperature), best_of_n_accuracy (some sample is correct: what a perfect
    judge would pick) and, with `votes`, majority_accuracy (the most-voted answer is correct)."""
    kept = [(p, ss) for p, ss in zip(prompts, samples) if task_name(p["prompt"]) not in heldout_types]
    prompts, samples = [p for p, _ in kept], [ss for _, ss in kept]
    right = [bool(check(p["prompt"], s)) for p, ss in zip(prompts, samples) for s in ss]
    best = _share([any(check(p["prompt"], s) for s in ss) for p, ss in zip(prompts, samples)])
    if not votes:
        return {"sampled_accuracy": _share(right), "best_of_n_accuracy": best}
    candidates = [{"prompt_id": p["id"], "prompt": p["prompt"], "candidate_id": j, "response": s}
                  for p, ss in zip(prompts, samples) for j, s in enumerate(ss)]
    prompt_of = {p["id"]: p["prompt"] for p in prompts}
    voted = [bool(check(prompt_of[pid], top[0])) if (top := majority(g)) else False
             for pid, g in tally(candidates, pattern).items()]
    return {"sampled_accuracy": _share(right), "best_of_n_accuracy": best, "majority_accuracy": _share(voted)}
