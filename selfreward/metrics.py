"""Per-round metrics (`round_<t>/metrics.json`) and the summary table printed at the end of a run."""

from __future__ import annotations

import json
from collections import Counter
from statistics import mean

from selfreward.files import read_jsonl, write_json
from selfreward.pairs import unflipped
from selfreward.round import StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, UpdateMethod
from selfreward.text import token_counts


def score_histogram(judgments: list[dict]) -> dict[str, int]:
    """Counts of every individual parsed score (logprob scores are rounded to the nearest point)."""
    counts = Counter(round(s) for j in judgments for s in j["scores"] if s is not None)
    return {str(k): counts[k] for k in sorted(counts)}


def _mean(values: list[float]) -> float | None:
    return round(mean(values), 3) if values else None


def round_metrics(cfg: Config, rd: RunDir, t: int, tokenizer) -> dict:
    manifest = rd.manifest(t)
    candidates = read_jsonl(rd.output(t, StageName.candidates))
    # a variant that ranks without a judge: none
    judgments = read_jsonl(rd.output(t, StageName.judge)) if rd.is_done(t, StageName.judge) else []

    single = [s for j in judgments for s in j["scores"]]
    histogram = score_histogram(judgments)
    parsed = sum(histogram.values())
    scores = [j["score"] for j in judgments if j["score"] is not None]
    metrics = {
        "round": t,
        "counts": {
            "prompts": manifest[StageName.prompts]["records"],
            "prompt_requests": manifest[StageName.prompts].get("requested"),
            "candidates": len(candidates),
            "judgments": len(single),
            "judgment_parse_failures": len(single) - parsed,
            "candidates_unscored": len(judgments) - len(scores),
        },
        "prompt_filter": {k: v for k, v in manifest[StageName.prompts].items() if k.startswith("dropped_")},
        "pair_filter": {k: v for k, v in manifest[StageName.pairs].items() if k.startswith("dropped_")},
        # how the variant's rule shaped the pairs (`Variant.rule_keys`): its length window, its smoothing
        "pair_rule": {k: v for k, v in manifest[StageName.pairs].items() if k in cfg.variant.rule_keys},
        "judge": {
            "judgment_parse_failure_rate": round(1 - parsed / len(single), 4) if single else None,
            "score_histogram": histogram,
            "mode_share": round(max(histogram.values()) / parsed, 4) if parsed else None,
            "mean_score": _mean(scores),
        },
        "lengths_tokens": {"all": _mean(token_counts(tokenizer, [c["response"] for c in candidates]))},
    }
    metrics["variant"] = cfg.variant.name
    if cfg.update.method is UpdateMethod.dpo:
        pairs = read_jsonl(rd.output(t, StageName.pairs))
        metrics["counts"]["pairs"] = len(pairs)
        metrics["counts"]["judge_pairs"] = sum(p.get("kind") == "judge" for p in pairs)
        # lengths of responses only, chosen as the judge chose (a variant may train some pairs flipped)
        pairs = [unflipped(p) for p in pairs if p.get("kind", "response") == "response"]
        metrics["lengths_tokens"]["chosen"] = _mean(token_counts(tokenizer, [p["chosen"] for p in pairs]))
        metrics["lengths_tokens"]["rejected"] = _mean(token_counts(tokenizer, [p["rejected"] for p in pairs]))
    else:
        sft = read_jsonl(rd.training_data(cfg, t))
        metrics["counts"]["sft_examples"] = len(sft)
        metrics["counts"]["judge_examples"] = sum(r.get("kind") == "judge" for r in sft)
        sft = [r for r in sft if r.get("kind", "response") == "response"]
        metrics["lengths_tokens"]["selected"] = _mean(token_counts(tokenizer, [r["response"] for r in sft]))
    update = manifest.get(StageName.update, {})
    metrics["training"] = {
        "skipped": bool(update.get("skipped")),
        "train_loss": update.get("train_loss"),
        "steps": update.get("steps"),
        **{k: v for k, v in update.get("last_log", {}).items() if k.startswith(("rewards/", "loss"))},
    }
    eval_path = rd.round_dir(t) / "eval.json"
    if eval_path.is_file():
        ev = json.loads(eval_path.read_text())
        policy = ev.get("policy", {})
        metrics["eval"] = {
            "judge_pairwise_accuracy": ev["judge"]["pairwise_accuracy"],
            "judge_parsed": round(1 - ev["judge"]["unscored_rate"], 4),
            "judge_kendall_tau": ev["judge"]["kendall_tau"],
        }
        for name in ("previous", "initial"):
            if f"vs_{name}" in policy:
                metrics["eval"][f"win_rate_vs_{name}"] = policy[f"vs_{name}"]["win_rate"]
                metrics["eval"][f"win_decided_vs_{name}"] = [policy[f"vs_{name}"].get("decided"),
                                                             policy[f"vs_{name}"]["n"]]
        if "testbed" in ev:
            metrics["eval"].update(testbed_headline(rd, ev["testbed"]))
    metrics["seconds"] = {stage: entry.get("seconds") for stage, entry in manifest.items()}
    write_json(rd.round_dir(t) / "metrics.json", metrics)
    return metrics


def testbed_headline(rd: RunDir, tb: dict) -> dict:
    """The testbed numbers a report plots: M_{t+1}'s, M1's (init/eval.json) and the gain."""
    init_eval = rd.init_dir / "eval.json"
    m1 = json.loads(init_eval.read_text())["testbed"] if init_eval.is_file() else {}
    gain = tb["accuracy"] - m1["accuracy"] if m1.get("accuracy") is not None and tb["accuracy"] is not None else None
    return {
        "testbed_accuracy": tb["accuracy"],
        "testbed_sampled_accuracy": tb.get("sampled_accuracy"),
        "testbed_majority_accuracy": tb.get("majority_accuracy"),
        "testbed_judge_accuracy": tb["judge_accuracy"],
        "testbed_pair_precision": tb.get("pair_precision"),
        "testbed_judge_own_pairwise_accuracy": tb.get("judge_own_pairwise_accuracy"),
        "testbed_generation_verification_gap": tb.get("generation_verification_gap"),
        "testbed_vote_accuracy": tb.get("vote_accuracy"),
        "testbed_m1_accuracy": m1.get("accuracy"),
        "testbed_m1_sampled_accuracy": m1.get("sampled_accuracy"),
        "testbed_m1_majority_accuracy": m1.get("majority_accuracy"),
        "testbed_m1_judge_accuracy": m1.get("judge_accuracy"),
        "testbed_accuracy_gain": round(gain, 4) if gain is not None else None,
        "testbed_heldout_version": tb.get("heldout_version"),
        # each beside M1's, only where eval.json has it (held-out types and the held-out gap: the
        # constraint family's): absent, never a placeholder
        **{f"testbed{m1_}_{k}": src[k] for k in MORE_HEADLINE for m1_, src in (("", tb), ("_m1", m1)) if k in src},
    }


MORE_HEADLINE = ("heldout_types_accuracy", "best_of_n_accuracy", "heldout_judge_pick_accuracy",
                  "heldout_generation_verification_gap", "mean_words")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _win(ev: dict, name: str) -> str:
    """A win rate with the comparisons it rests on: "0.62 (5/16)"; only the counts when none was decided."""
    decided = ev.get(f"win_decided_vs_{name}")
    if decided is None:
        return "-"
    return f"{_fmt(ev.get(f'win_rate_vs_{name}'), '.2f')} ({decided[0]}/{decided[1]})"


def summary_rows(all_metrics: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(columns, one row per round) of the end-of-run summary."""
    columns = ["round", "prompts", "cands", "unparsed judgments", "mode share", "mean score", "train on",
               "len chosen/rej", "loss", "reward acc", "judge acc (unparsed = wrong)", "judge parsed",
               "win vs prev (decided/n)", "win vs M1 (decided/n)", "seconds"]
    testbed = any("testbed_accuracy" in m.get("eval", {}) for m in all_metrics)
    if testbed:  # the ground truth: held-out accuracy and judge accuracy of M_{t+1}, chosen-correct share
        columns[-1:-1] = ["true acc", "true judge acc", "chosen correct"]
    rows = []
    for m in all_metrics:
        c, j, lens, tr, ev = m["counts"], m["judge"], m["lengths_tokens"], m["training"], m.get("eval", {})
        train_on = f"{c['pairs']} pairs" if "pairs" in c else f"{c['sft_examples']} sft"
        if tr.get("skipped"):
            train_on += " (update skipped)"
        length = "/".join(_fmt(lens.get(k), ".1f") for k in (("chosen", "rejected") if "chosen" in lens else ("selected",)))
        row = [
            str(m["round"]), str(c["prompts"]), str(c["candidates"]), _fmt(j["judgment_parse_failure_rate"], ".1%"),
            _fmt(j["mode_share"], ".2f"), _fmt(j["mean_score"], ".2f"), train_on, length,
            _fmt(tr.get("train_loss"), ".4f"), _fmt(tr.get("rewards/accuracies"), ".2f"),
            _fmt(ev.get("judge_pairwise_accuracy"), ".2f"), _fmt(ev.get("judge_parsed"), ".0%"),
            _win(ev, "previous"), _win(ev, "initial"),
        ]
        if testbed:
            keys = ("testbed_accuracy", "testbed_judge_accuracy", "testbed_pair_precision")
            row += [_fmt(ev.get(k), ".2f") for k in keys]
        rows.append([*row, _fmt(sum(v for v in m["seconds"].values() if v), ".0f")])
    return columns, rows


def summary_table(all_metrics: list[dict]):
    """The summary as a rich table whose cells wrap, never cut, at any width."""
    from rich.table import Table

    columns, rows = summary_rows(all_metrics)
    table = Table(title="selfreward: rounds")
    for col in columns:
        table.add_column(col, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def summary_markdown(all_metrics: list[dict]) -> str:
    columns, rows = summary_rows(all_metrics)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
