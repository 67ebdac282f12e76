"""`selfreward eft RANKED --model M --out EFT.jsonl [overrides]`: the paper's EFT data, made the paper's way.

"Self-Rewarding Language Models" (arXiv 2401.10020, section 2.2) builds its evaluation fine-tuning data
by having the SFT model judge responses that humans ranked, with the LLM-as-a-Judge prompt, and
keeping the judgments whose scores agree with the human ranking. The input is one record per prompt:

    {"prompt": "...", "responses": ["...", "..."], "ranks": [1, 2]}      (rank 1 = best; ties allowed)

(`instruction` is taken for `prompt`). Each response gets one sampled judgment with the run's judge
settings (`judge.template`, `judge.temperature`, ...); a prompt's judgments are kept, all of them,
only when every judgment parsed and the scores order every pair of responses the way the ranks do
(a strictly higher score for the better-ranked response). Otherwise the prompt is dropped and the
reason counted: `unparsed` (a judgment with no score), `tie` (two responses ranked apart scored
alike), `disagree` (a pair scored in the opposite order). The kept records are EFT records
{instruction, response, judgment, score} that `data.eft_path` takes.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from selfreward.data import read_records
from selfreward.errors import ConfigError
from selfreward.files import write_jsonl
from selfreward.generation import load_generator
from selfreward.judge import judge_candidates
from selfreward.schema import Config, JudgeMethod


def ranked_items(path: str | Path) -> list[dict]:
    """The ranked-responses file, checked: a bad record names its file and line (row)."""
    items = []
    for where, row in read_records(path):
        prompt = row.get("prompt", row.get("instruction")) if isinstance(row, dict) else None
        responses, ranks = (row.get("responses"), row.get("ranks")) if isinstance(row, dict) else (None, None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{where}: no 'prompt' (or 'instruction') string")
        if not (isinstance(responses, list) and len(responses) >= 2 and all(isinstance(r, str) and r.strip()
                                                                          for r in responses)):
            raise ConfigError(f"{where}: 'responses' must be a list of at least two non-empty strings")
        if not (isinstance(ranks, list) and len(ranks) == len(responses) and all(isinstance(k, int) for k in ranks)):
            raise ConfigError(f"{where}: 'ranks' must be one integer per response (1 = best)")
        if len(set(ranks)) < 2:
            raise ConfigError(f"{where}: every response has the same rank: nothing to agree with")
        items.append({"prompt": prompt, "responses": responses, "ranks": ranks})
    if not items:
        raise ConfigError(f"{path}: no records")
    return items


def verdict(ranks: list[int], scores: list[float | None]) -> str | None:
    """Why a prompt's judgments are dropped (None: they agree with the human ranking)."""
    if any(s is None for s in scores):
        return "unparsed"
    pairs = [(i, j) for i in range(len(ranks)) for j in range(len(ranks)) if ranks[i] < ranks[j]]
    if any(scores[i] < scores[j] for i, j in pairs):
        return "disagree"
    if any(scores[i] == scores[j] for i, j in pairs):
        return "tie"
    return None


def build(gen, cfg: Config, items: list[dict], seed: int = 0) -> tuple[list[dict], dict]:
    """(EFT records, counts) from the ranked items, judged by `gen` with one sampled judgment each."""
    judge = replace(cfg.judge, method=JudgeMethod.sampled, samples=1)
    candidates = [{"prompt_id": str(i), "prompt": it["prompt"], "candidate_id": j, "response": r}
                  for i, it in enumerate(items) for j, r in enumerate(it["responses"])]
    judged = judge_candidates(gen, judge, candidates, seed)
    by_prompt: dict[str, list[dict]] = {}
    for c, j in zip(candidates, judged):
        by_prompt.setdefault(c["prompt_id"], []).append({**c, "score": j["score"], "judgment": j["judgments"][0]})
    kept, drops = [], Counter()
    for i, it in enumerate(items):
        rows = by_prompt[str(i)]
        why = verdict(it["ranks"], [r["score"] for r in rows])
        if why:
            drops[why] += 1
            continue
        kept += [{"instruction": r["prompt"], "response": r["response"], "judgment": r["judgment"].strip(),
                  "score": r["score"]} for r in rows]
    counts = {"prompts": len(items), "kept_prompts": len(items) - sum(drops.values()), "kept_judgments": len(kept),
              **{f"dropped_{k}": drops[k] for k in ("unparsed", "tie", "disagree")}}
    return kept, counts


def run(ranked: str, model: str, out: str, cfg: Config) -> dict:
    items = ranked_items(ranked)
    kept, counts = build(load_generator(cfg, model), cfg, items, cfg.seed)
    if not kept:
        raise ConfigError(f"no judgment agreed with the human ranking ({counts}): nothing to write to {out}")
    write_jsonl(Path(out), kept)
    print(json.dumps(counts), file=sys.stderr)
    return counts
