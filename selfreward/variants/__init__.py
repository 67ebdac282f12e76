"""Self-rewarding variants: each changes one part of the round, switched on with `variant=<name>`.

| variant         | what it changes                                                      | module      |
|-----------------|----------------------------------------------------------------------|-------------|
| base            | nothing: best vs worst of M_t's candidates, judged by M_t            |             |
| meta            | adds judge pairs from a meta-judge of M_t's own judgments             | meta.py     |
| temporal        | rejected from M1 (anchored), chosen from a look-ahead model (future) | pairs below |
| consistency     | drops pairs a second judge orders differently                        | pairs below |
| length          | picks best/worst inside a length window                              | length.py   |
| seed_anchored   | mixes seed prompts into each round's prompt set                      | prompts stage |
| self_consistency| no judge: most-voted vs least-voted answer (ScPO)                    | votes.py    |
| cream           | labels smoothed by 1 - C, C the agreement with M_{t-1}'s ranking     | cream.py    |
| random          | uniform random scores: the floor every gain is read against          | judge stage |

The stages a variant adds are rows of the stage table (`selfreward.round`); this module holds the
rules by which the round's training data is built (`preference_pairs` / `sft_examples`).
"""

from __future__ import annotations

from dataclasses import replace

from selfreward.checkpoint import load_tokenizer
from selfreward.files import read_jsonl
from selfreward.pairs import best_and_worst, build_pairs, build_sft, score_index
from selfreward.round import StageName, stage_seed
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeConfig, VariantName
from selfreward.variants import cream, length, meta, votes


def second_judge(cfg: Config) -> JudgeConfig:
    """The consistency variant's second judge: the round's judge with another method or template."""
    v = cfg.variant
    return replace(cfg.judge, method=v.second_judge, template=v.second_template or cfg.judge.template)


# Each stage of sampled candidates -> the stage that judges them.
JUDGED_BY = {StageName.candidates: StageName.judge, StageName.anchor_candidates: StageName.anchor_judge,
             StageName.future_candidates: StageName.future_judge}


def _read(rd: RunDir, t: int, *stages: StageName) -> list[list[dict]]:
    return [read_jsonl(rd.output(t, s)) for s in stages]


def preference_pairs(cfg: Config, rd: RunDir, t: int, future: bool = True) -> tuple[list[dict], dict]:
    """The round's DPO pairs. `future=False` gives the temporal variant's draft pairs, which train
    the look-ahead model before the future candidates exist."""
    v, extra = cfg.variant, {}
    if v.name is VariantName.self_consistency:
        return votes.vote_pairs(read_jsonl(rd.output(t, StageName.candidates)), v)
    chosen_from = rejected_from = StageName.candidates
    if v.name is VariantName.temporal:
        if v.anchored_rejection:
            rejected_from = StageName.anchor_candidates
        if v.future_chosen and future:
            chosen_from = StageName.future_candidates
    if rejected_from != chosen_from:  # rejected: the worst of another model's candidates (M1's, or M_t's)
        extra["rejected_from"] = tuple(_read(rd, t, rejected_from, JUDGED_BY[rejected_from]))
    candidates, judgments = _read(rd, t, chosen_from, JUDGED_BY[chosen_from])
    controlled = v.name is VariantName.meta and v.length_control > 0
    if v.rho or controlled:
        lengths = length.token_lengths(_tokenizer(cfg, rd, t), candidates)
        pick = length.controlled_select(lengths, v.length_control) if controlled else best_and_worst
        extra["select"] = length.windowed_select(lengths, length.rho(cfg, t), pick) if v.rho else pick
    pairs, drops = build_pairs(candidates, judgments, cfg.pairs.min_margin, **extra)
    for p in pairs:
        p["chosen_from"], p["rejected_from"] = chosen_from, rejected_from
    if v.name is VariantName.consistency:
        pairs, drops["dropped_judges_disagree"] = agreeing(pairs, read_jsonl(rd.output(t, StageName.second_judge)))
    if v.name is VariantName.meta:
        pairs += [meta.as_pair(r) for r in _judge_pairs(cfg, rd, t, len(pairs), drops)]
    if v.rho:
        drops["length_rho"] = length.rho(cfg, t)
    if v.name is VariantName.cream:
        drops.update(cream.smoothing(*_previous_rankings(rd, t)))
        seed = stage_seed(cfg, t, StageName.pairs)
        pairs, drops["cream_flipped"] = cream.smooth_labels(pairs, drops["label_smoothing"], seed)
    return pairs, drops


def _previous_rankings(rd: RunDir, t: int) -> tuple[list[dict], list[dict] | None]:
    """CREAM: this round's judgments, and M_{t-1}'s of the same candidates (None in round 1)."""
    previous = rd.output(t, StageName.previous_judge)
    return read_jsonl(rd.output(t, StageName.judge)), read_jsonl(previous) if t >= 2 else None


def _tokenizer(cfg: Config, rd: RunDir, t: int):
    return load_tokenizer(rd.policy(cfg, t), cfg)


def _judge_pairs(cfg: Config, rd: RunDir, t: int, n_response: int, drops: dict) -> list[dict]:
    """The meta variant's judge pairs that fit training (counted in `drops`), capped at its share."""
    records, drops["dropped_too_long"] = meta.fitting(read_jsonl(rd.output(t, StageName.meta_judge)),
                                                      _tokenizer(cfg, rd, t), cfg.train.max_length)
    kept = meta.capped(records, n_response, cfg.variant.meta_share)
    drops["judge_pairs"] = len(kept)
    return kept


def agreeing(pairs: list[dict], second: list[dict]) -> tuple[list[dict], int]:
    """Keep the pairs the second judge also orders chosen > rejected (a pair it cannot score is dropped)."""
    score = score_index(second)
    kept = []
    for p in pairs:
        c, r = score.get((p["prompt_id"], p["chosen_id"])), score.get((p["prompt_id"], p["rejected_id"]))
        if c is not None and r is not None and c > r:
            kept.append({**p, "second_score_chosen": c, "second_score_rejected": r})
    return kept, len(pairs) - len(kept)


def sft_examples(cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
    """The round's score-filtered SFT set, under the same variant rules where they apply."""
    v, threshold = cfg.variant, cfg.pairs.sft_threshold
    if v.name is VariantName.self_consistency:
        return votes.majority_examples(read_jsonl(rd.output(t, StageName.candidates)), v)
    names = cfg.judge.score_names
    thresholds = dict(zip(names, cfg.pairs.sft_thresholds or [threshold] * len(names)))
    candidates, judgments = _read(rd, t, StageName.candidates, StageName.judge)
    rows = [{**r, "kind": "response"} for r in build_sft(candidates, judgments, thresholds)]
    drops = {"dropped_below_threshold": sum(j["score"] is not None for j in judgments) - len(rows)}
    if v.name is VariantName.consistency:
        second = score_index(read_jsonl(rd.output(t, StageName.second_judge)))
        both = [(r, second.get((r["prompt_id"], r["candidate_id"]))) for r in rows]
        kept = [r for r, s in both if s is not None and s >= threshold]
        rows, drops["dropped_judges_disagree"] = kept, len(rows) - len(kept)
    if v.rho:
        lengths = length.token_lengths(_tokenizer(cfg, rd, t), candidates)
        kept = length.within_window(rows, lengths, length.rho(cfg, t))
        rows, drops["dropped_length_window"] = kept, len(rows) - len(kept)
    if v.name is VariantName.meta:
        rows += [meta.as_sft(r) for r in _judge_pairs(cfg, rd, t, len(rows), drops)]
    if v.name is VariantName.cream:
        rows, drops["dropped_rankings_disagree"] = cream.agreeing_prompts(rows, *_previous_rankings(rd, t))
    return rows, drops
