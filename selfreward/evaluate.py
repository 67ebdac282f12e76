"""Stage 6, evaluate: did the round help? Written to `round_<t>/eval.json`.

- judge quality: M_t (the model that judged this round; `judge.model` when set) scores a held-out
  EFT split with the round's judge settings; pairwise accuracy, exact-score match, Spearman and
  Kendall tau against the reference scores, parse-failure rate;
- policy quality: a fixed evaluator (M1 by default, or `eval.judge=<path>`) compares M_{t+1}'s greedy
  answers on held-out prompts with M_t's and M1's, each pair in both orders (position bias cancels),
  reading P("1") vs P("2") after a forced "Better:"; ties count half (`eval.win_rates=false` skips it);
- testbed (`recipe=testbed`): M_{t+1}'s held-out accuracy and judge accuracy checked by the program,
  and the share of the round's chosen / rejected responses that are right / wrong; `--round 0`
  writes the same for M1 to `init/eval.json`;
- drift: length and distinct-n of the round's responses, distinct-n of its prompts, and the share of
  its prompts that repeat an earlier round's.

Each model's held-out answers are kept in `eval_responses.jsonl` next to it, so every model answers
once. Run by the orchestrator as `python -m selfreward.evaluate --run-dir R --round t`.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from pathlib import Path

from selfreward import stats, testbed, testbed_metrics
from selfreward.config import load_frozen
from selfreward.data import DATA_DIR, heldout_prompts, load_seed
from selfreward.errors import ConfigError
from selfreward.files import read_jsonl, write_json, write_jsonl
from selfreward.generation import load_generator
from selfreward.generation.base import Sampling
from selfreward.judge import judge_candidates, option_token_ids, own_judge
from selfreward.process import stage_main
from selfreward.round import StageName, stage_seed
from selfreward.rundir import RunDir
from selfreward.schema import Config, TestbedFamily
from selfreward.templates import Template, chat_prompt
from selfreward.text import normalize, token_counts


def eft_items(rows: list[dict]) -> list[dict]:
    """Held-out EFT records as candidates for `judge_candidates` (one group per instruction)."""
    return [{"prompt_id": r["instruction"], "prompt": r["instruction"], "candidate_id": i, "response": r["response"]}
            for i, r in enumerate(rows)]


def judge_quality(gen, cfg: Config, seed: int) -> dict:
    rows = load_seed(cfg.eval.eft_path or DATA_DIR / "heldout_eft.jsonl", "eft")
    if any("score" not in r for r in rows):
        raise ConfigError("eval.eft_path: every held-out EFT record needs a reference 'score'")
    judged = judge_candidates(gen, own_judge(cfg.judge), eft_items(rows), seed)
    # pairwise accuracy over every held-out pair, an unparsed judgment counting as wrong; the
    # correlations need numbers and are over the parsed items only
    accuracy, n_pairs = stats.pairwise_accuracy([r["instruction"] for r in rows], [j["score"] for j in judged],
                                                [float(r["score"]) for r in rows])
    scored = [(j["score"], float(r["score"])) for r, j in zip(rows, judged) if j["score"] is not None]
    judge, reference = (list(x) for x in zip(*scored)) if scored else ([], [])
    return {
        "n_items": len(rows),
        "unscored_rate": 1 - len(scored) / len(rows),  # held-out items whose every judgment failed to parse
        "pairwise_accuracy": accuracy,
        "n_pairs": n_pairs,
        "exact_match": sum(round(j) == r for j, r in zip(judge, reference)) / len(scored) if scored else None,
        "spearman": stats.spearman(judge, reference),
        "kendall_tau": stats.kendall_tau(judge, reference),
    }


def testbed_quality(gen, cfg: Config, rd: RunDir, t: int, prompts: list[dict], responses: list[str],
                    seed: int) -> dict:
    """The testbed's ground truth for the model in `gen` (M_{t+1}; M1 when t = 0): its greedy and
    sampled held-out answers and its judgments checked by the program, and how correct round t's
    training data and own candidates were."""
    eft = load_seed(cfg.eval.eft_path, "eft")
    scores = [j["score"] for j in judge_candidates(gen, own_judge(cfg.judge), eft_items(eft), seed)]
    g = cfg.generation
    rendered = [chat_prompt(gen.tokenizer, p["prompt"]) for p in prompts]
    samples = gen.generate(rendered, Sampling(g.temperature, g.top_p, cfg.eval.max_new_tokens, n=g.num_candidates,
                                              seed=seed), desc="eval samples")
    # free text (the constraint family) has no answer to take a majority vote on
    votes, held = cfg.testbed.family is TestbedFamily.strings, frozenset(cfg.testbed.heldout_tasks)
    sampled = testbed_metrics.sampled_metrics(prompts, samples, cfg.variant.answer_pattern, votes, held)
    version = {"heldout_version": cfg.testbed.heldout_version}  # which frozen held-out set these are on
    training = read_jsonl(rd.training_data(cfg, t)) if t else None  # M1 (t = 0): no round data yet
    out = testbed_metrics.metrics(prompts, responses, eft, scores, cfg.judge.max_score, training, held)
    if not votes:
        out.update(heldout_gap(gen, cfg, prompts, samples, held, seed + 1))
    if not t:
        return {**out, **sampled, **version}
    # a variant that ranks by votes has no judgments
    judgments = read_jsonl(rd.output(t, StageName.judge)) if rd.is_done(t, StageName.judge) else []
    candidates = read_jsonl(rd.output(t, StageName.candidates))
    own = testbed_metrics.candidate_stats(candidates, judgments, cfg.variant.answer_pattern, votes)
    return {**out, **sampled, **own, **version}


def heldout_gap(gen, cfg: Config, prompts: list[dict], samples: list[list[str]], heldout_types: frozenset,
                seed: int) -> dict:
    """The generation-verification gap on the held-out prompts of trained types, M1 included: the
    model judges its own samples; how often its pick passes the checker, beside sampling's pass rate."""
    candidates = [{"prompt_id": p["id"], "prompt": p["prompt"], "candidate_id": j, "response": s}
                  for p, ss in zip(prompts, samples) if testbed.task_name(p["prompt"]) not in heldout_types
                  for j, s in enumerate(ss)]
    stats = testbed_metrics.candidate_stats(candidates, judge_candidates(gen, own_judge(cfg.judge), candidates, seed), votes=False)
    return {"heldout_judge_own_pairwise_accuracy": stats["judge_own_pairwise_accuracy"],
            "heldout_judge_pick_accuracy": stats["judge_pick_accuracy"],
            "heldout_generation_verification_gap": stats["generation_verification_gap"]}


def answers(cfg: Config, model: str, path: Path, prompts: list[dict], gen=None) -> list[str]:
    """Greedy answers of `model` to the held-out prompts, cached in `path`."""
    if path.is_file():
        return [r["response"] for r in read_jsonl(path)]
    gen = gen or load_generator(cfg, model)
    rendered = [chat_prompt(gen.tokenizer, p["prompt"]) for p in prompts]
    texts = [o[0] for o in gen.generate(rendered, Sampling(0.0, 1.0, cfg.eval.max_new_tokens), desc="eval answers")]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [{"id": p["id"], "prompt": p["prompt"], "response": r} for p, r in zip(prompts, texts)])
    return texts


def win_rates(gen, cfg: Config, prompts: list[dict], new: list[str], others: dict[str, list[str]]) -> dict:
    template = Template(cfg.eval.template, ("instruction", "response_1", "response_2"), key="eval.template")
    # Digits, like scores, are single tokens in common tokenizers; letters often merge with a space.
    prefix, ids = option_token_ids(gen.tokenizer, "Better", ["1", "2"])

    def render(p, first, second):
        return chat_prompt(gen.tokenizer, template.render(instruction=p, response_1=first, response_2=second)) + prefix

    results = {}
    for name, old in others.items():
        first = [render(p["prompt"], n, o) for p, n, o in zip(prompts, new, old)]
        second = [render(p["prompt"], o, n) for p, n, o in zip(prompts, new, old)]
        probs = gen.next_token_probs(first + second, ids, desc=f"win rate vs {name}")
        outcomes = [stats.swapped_outcome(a, b) for a, b in zip(probs[: len(prompts)], probs[len(prompts) :])]
        results[f"vs_{name}"] = stats.win_rate(outcomes)
    return results


def drift(rd: RunDir, t: int, tokenizer) -> dict:
    responses = [c["response"] for c in read_jsonl(rd.output(t, StageName.candidates))]
    prompts = [p["prompt"] for p in read_jsonl(rd.output(t, StageName.prompts))]
    earlier = {normalize(p["prompt"]) for r in range(1, t) for p in read_jsonl(rd.output(r, StageName.prompts))}
    lengths = token_counts(tokenizer, responses)
    buckets = Counter(min(n // 16 * 16, 256) for n in lengths)
    return {
        "response_length_mean": sum(lengths) / len(lengths) if lengths else None,
        "response_length_histogram": {f"{k}-{k + 15}" if k < 256 else "256+": buckets[k] for k in sorted(buckets)},
        "distinct_1_responses": stats.distinct_n(responses, 1),
        "distinct_2_responses": stats.distinct_n(responses, 2),
        "distinct_1_prompts": stats.distinct_n(prompts, 1),
        "distinct_2_prompts": stats.distinct_n(prompts, 2),
        "prompt_repeat_share": sum(normalize(p) in earlier for p in prompts) / len(prompts) if prompts else None,
    }


def evaluate_round(cfg: Config, rd: RunDir, t: int) -> dict:
    prompts = heldout_prompts(cfg)
    seed = stage_seed(cfg, t, StageName.evaluate)
    policy, judge_model = rd.policy(cfg, t), cfg.judge.model or rd.policy(cfg, t)
    evaluator = rd.initial(cfg) if cfg.eval.judge == "initial" else cfg.eval.judge
    # One model in memory at a time, each loaded once where it can be: M_{t+1} first, then M_t, which
    # in round 1 is M1, the evaluator of the win rates too. (Every call is seeded on its own, so the
    # order changes no figure.)
    # M_{t+1}: its answers; on the testbed also its judgments, both checked against the truth.
    gen = load_generator(cfg, str(rd.model(t)))
    new = answers(cfg, str(rd.model(t)), rd.round_dir(t) / "eval_responses.jsonl", prompts, gen)
    checked = testbed_quality(gen, cfg, rd, t, prompts, new, seed) if cfg.testbed.enabled else None
    tokenizer = gen.tokenizer
    gen = None
    gc.collect()
    # M_t: judge quality, and its own answers (cached from the previous round when it was M_{t+1}).
    gen, loaded = load_generator(cfg, judge_model), judge_model
    result = {"round": t, "judge": {"model": judge_model, **judge_quality(gen, cfg, seed)}}
    if checked is not None:
        result["testbed"] = checked
    if cfg.eval.win_rates:
        if loaded != policy:
            gen = None
            gc.collect()
            gen, loaded = load_generator(cfg, policy), policy
        previous = answers(cfg, policy, rd.stage_dir(t - 1) / "eval_responses.jsonl", prompts, gen)
        initial_answers = rd.init_dir / "eval_responses.jsonl"  # written in round 1, as M1's "previous"
        if loaded != rd.initial(cfg) and not initial_answers.is_file():
            gen = loaded = None  # answers() loads M1 on its own
            gc.collect()
        initial = answers(cfg, rd.initial(cfg), initial_answers, prompts, gen if loaded == rd.initial(cfg) else None)
        if loaded != evaluator:
            gen = None
            gc.collect()
            gen = load_generator(cfg, evaluator)
        others = {"previous": previous} if t == 1 else {"previous": previous, "initial": initial}
        result["policy"] = {"evaluator": evaluator, **win_rates(gen, cfg, prompts, new, others)}
        if t == 1:  # M_t is M1: the same comparison
            result["policy"]["vs_initial"] = result["policy"]["vs_previous"]
    result["drift"] = drift(rd, t, tokenizer)
    return result


def evaluate_initial(cfg: Config, rd: RunDir) -> dict:
    """`init/eval.json` (testbed runs): M1's ground-truth metrics, the baseline every round is read against."""
    prompts = heldout_prompts(cfg)
    gen = load_generator(cfg, rd.initial(cfg))
    responses = answers(cfg, rd.initial(cfg), rd.init_dir / "eval_responses.jsonl", prompts, gen)
    return {"round": 0, "model": rd.initial(cfg),
            "testbed": testbed_quality(gen, cfg, rd, 0, prompts, responses, stage_seed(cfg, 0, StageName.evaluate))}


def summary(result: dict) -> str:
    parts = []
    if "judge" in result:
        parts.append(f"judge pairwise accuracy {result['judge']['pairwise_accuracy']}")
    if "policy" in result:
        p = result["policy"]
        parts.append(f"win rate vs previous {p['vs_previous']['win_rate']}, vs M1 {p['vs_initial']['win_rate']}")
    if "testbed" in result:
        tb = result["testbed"]
        parts.append(f"testbed accuracy {tb['accuracy']}, judge accuracy {tb['judge_accuracy']}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    return stage_main(argv, __doc__, lambda args: evaluate(args.run_dir, args.round))


def evaluate(run_dir: str, t: int) -> None:
    """Round t's evaluation stage (t = 0: M1's, on the testbed), unless it is done."""
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    if rd.is_done(t, StageName.evaluate):
        return
    start = time.perf_counter()
    result = evaluate_round(cfg, rd, t) if t else evaluate_initial(cfg, rd)
    write_json(rd.stage_dir(t) / "eval.json", result)
    rd.mark_done(t, StageName.evaluate, [rd.model(t)], records=len(heldout_prompts(cfg)),
                 seconds=round(time.perf_counter() - start, 3))
    print(f"[{f'round {t}' if t else StageName.init}] evaluate: {summary(result)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
