"""Meta-Rewarding (arXiv 2407.19594): the model judges its own judgments.

For every candidate with at least two distinct parsed judgments, M_t compares each two of them with
the meta-judge template (`variant.meta_template`), in both orders so position bias cancels: it writes
its comparison (greedy, up to `judge.max_new_tokens`), then its verdict is read as P("1") vs P("2")
after "Better:". A judgment's strength is its mean soft win rate; the
strongest and the weakest judgment form a judge pair (prompt = the judge prompt). Judge pairs join
the response pairs in the same update, capped at `variant.meta_share` of all pairs, most decisive
first: a larger share is known to collapse the judge to constant scores. The response pairs get the
paper's length control (`variant.length_control`, `selfreward.pairs.controlled_select`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import partial

from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.generation.base import Generator
from selfreward.judge import judge_template, reason_then_read
from selfreward.pairs import controlled_select
from selfreward.round import Role, Runner, Stage, StageName
from selfreward.rundir import ChunkLog, RunDir
from selfreward.schema import Config, JudgeMethod, bounded
from selfreward.templates import Template, chat_prompt
from selfreward.variants.base import Variant, tokenizer

META_JUDGE = "meta_judge"


def judged_twice(candidates: list[dict], judgments: list[dict]) -> list[dict]:
    """{prompt_id, candidate_id, prompt, response, judgments} for candidates with >= 2 distinct parsed judgments."""
    by_id = {(c["prompt_id"], c["candidate_id"]): c for c in candidates}
    items = []
    for j in judgments:
        texts = list(dict.fromkeys(t for t, s in zip(j["judgments"], j["scores"]) if s is not None))
        if len(texts) >= 2:
            c = by_id[(j["prompt_id"], j["candidate_id"])]
            items.append({"prompt_id": c["prompt_id"], "candidate_id": c["candidate_id"], "prompt": c["prompt"],
                          "response": c["response"], "judgments": texts})
    return items


def meta_judge(generator: Generator, cfg: Config, items: list[dict], seed: int) -> list[dict]:
    """One record per item: {prompt_id, candidate_id, judge_prompt, chosen, rejected, strengths, margin,
    comparisons}. Deterministic (greedy reasoning, then a read verdict), so `seed` is unused."""
    template = Template(cfg.variant.meta_template, ("instruction", "response", "judgment_1", "judgment_2"),
                        key="variant.meta_template")
    comparisons = [(i, a, b) for i, item in enumerate(items)
                   for a, b in itertools.permutations(range(len(item["judgments"])), 2)]
    rendered = [
        chat_prompt(generator.tokenizer, template.render(
            instruction=items[i]["prompt"], response=items[i]["response"],
            judgment_1=items[i]["judgments"][a], judgment_2=items[i]["judgments"][b]))
        for i, a, b in comparisons
    ]
    reasoning, probs = reason_then_read(generator, rendered, "Better", ["1", "2"], cfg.judge.max_new_tokens,
                                        "meta-judge")
    wins = [[0.0] * len(item["judgments"]) for item in items]
    texts: list[list[dict]] = [[] for _ in items]
    for (i, a, b), (p1, p2), why in zip(comparisons, probs, reasoning):
        first = p1 / (p1 + p2) if p1 + p2 > 0 else 0.5  # soft win of the judgment shown first
        wins[i][a] += first
        wins[i][b] += 1 - first
        texts[i].append({"first": a, "second": b, "reasoning": why, "p_first": round(first, 4)})
    judge = judge_template(cfg.judge)
    records = []
    for item, w, compared in zip(items, wins, texts):
        strength = [x / (2 * (len(w) - 1)) for x in w]  # each judgment is in 2(k-1) comparisons
        best = max(range(len(w)), key=lambda a: (strength[a], -a))
        worst = min(range(len(w)), key=lambda a: (strength[a], a))
        records.append({
            "prompt_id": item["prompt_id"], "candidate_id": item["candidate_id"],
            "judge_prompt": judge.render(instruction=item["prompt"], response=item["response"]),
            "chosen": item["judgments"][best], "rejected": item["judgments"][worst],
            "strengths": strength, "margin": strength[best] - strength[worst], "comparisons": compared,
        })
    return records


def run_meta_judge(gen: Generator, cfg: Config, rd: RunDir, t: int, stage: str = META_JUDGE) -> dict:
    """The generation worker's `meta_judge` stage: round_<t>/meta_judgments.jsonl."""
    items = judged_twice(read_jsonl(rd.output(t, StageName.candidates)), read_jsonl(rd.output(t, StageName.judge)))
    log = ChunkLog(rd.output(t, stage))
    records = log.run_chunks(items, cfg.generation.batch_size, 0, partial(meta_judge, gen, cfg), "meta-judge")
    log.finish()
    return {"records": len(records), "candidates_judged_twice": len(items)}


def fitting(records: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """(judge pairs whose prompt and longer judgment fit `max_length` tokens, how many did not):
    training cuts a long example's end, and a judgment cut there loses its score."""
    def length(r: dict) -> int:
        longer = max(r["chosen"], r["rejected"], key=len)
        messages = [{"role": "user", "content": r["judge_prompt"]}, {"role": "assistant", "content": longer}]
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])

    kept = [r for r in records if length(r) <= max_length]
    return kept, len(records) - len(kept)


def capped(records: list[dict], n_response: int, share: float) -> list[dict]:
    """The most decisive judge pairs, at most `share` of response + judge pairs together."""
    limit = math.floor(share * n_response / (1 - share) + 1e-9)
    decisive = sorted((r for r in records if r["margin"] > 0),
                      key=lambda r: (-r["margin"], r["prompt_id"], r["candidate_id"]))
    return decisive[:limit]


def as_pair(r: dict) -> dict:
    return {"prompt_id": r["prompt_id"], "prompt": r["judge_prompt"], "chosen": r["chosen"],
            "rejected": r["rejected"], "score_chosen": max(r["strengths"]), "score_rejected": min(r["strengths"]),
            "candidate_id": r["candidate_id"], "kind": "judge"}


def as_sft(r: dict) -> dict:
    return {"prompt_id": r["prompt_id"], "prompt": r["judge_prompt"], "response": r["chosen"],
            "score": max(r["strengths"]), "candidate_id": r["candidate_id"], "kind": "judge"}


@dataclass
class Meta(Variant):
    """Adds judge pairs from a meta-judge of M_t's own judgments (Meta-Rewarding, arXiv 2407.19594)."""

    name: str = "meta"
    meta_share: float = bounded(0.15, "(0, 1)", "Most judge pairs may be of all pairs (more collapses the judge).")
    meta_template: str = field(default="meta_judge.txt", metadata={"help": "File in prompts/ or a path."})
    length_control: float = bounded(0.0, "[0, 1]", "Chosen is the shortest response scoring within this share of "
                                    "the prompt's score range from its top (0 = the best).")

    stages = (Stage(META_JUDGE, ("meta_judgments.jsonl",), Runner.generate, seed=4, model=Role.judge,
                    inputs=(StageName.candidates, StageName.judge), settings=("variant.meta_template",),
                    after=StageName.judge, run=run_meta_judge),)

    def validate(self, cfg: Config) -> None:
        if cfg.judge.method is not JudgeMethod.sampled or cfg.judge.samples < 2:
            got = f"method={cfg.judge.method.value}, samples={cfg.judge.samples}"
            raise ConfigError("variant=meta compares judgments of one response: it needs judge=sampled and "
                              f"'judge.samples' >= 2 (got {got}).")

    def templates(self, cfg: Config) -> list[tuple[str, str]]:
        return [("variant.meta_template", self.meta_template)]

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        pick = (lambda lengths: controlled_select(lengths, self.length_control)) if self.length_control > 0 else None
        pairs, drops = self.best_vs_worst(cfg, rd, t, pick=pick)
        return pairs + [as_pair(r) for r in self.judge_pairs(cfg, rd, t, len(pairs), drops)], drops

    def sft_examples(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        rows, drops = super().sft_examples(cfg, rd, t)
        return rows + [as_sft(r) for r in self.judge_pairs(cfg, rd, t, len(rows), drops)], drops

    def judge_pairs(self, cfg: Config, rd: RunDir, t: int, n_response: int, drops: dict) -> list[dict]:
        """The judge pairs that fit training (counted in `drops`), capped at `meta_share`."""
        records, drops["dropped_too_long"] = fitting(read_jsonl(rd.output(t, META_JUDGE)), tokenizer(cfg, rd, t),
                                                     cfg.train.max_length)
        kept = capped(records, n_response, self.meta_share)
        drops["judge_pairs"] = len(kept)
        return kept
