"""The variant every other one extends: the paper's round (best vs worst of M_t's candidates, judged
by M_t), and the parts a variant may change.

A variant is a config class: its dataclass fields are its settings (`variant.<field>`), and it
overrides what it changes:

- `stages`: the stages it adds, rows of the stage table (`selfreward.round.Stage`) that say which
  stage they run after and in which rounds (`when`);
- `skips`: the paper's stages it leaves out, with why (`status` shows it);
- `judge`: how a judge stage scores candidates (by default the judge of `judge.method`), and
  `judge_model`: whether that needs a model loaded;
- `preference_pairs` / `sft_examples`: how the round's DPO pairs or SFT set are built;
- `validate`: what it needs of the rest of the config (raise `ConfigError`); `templates`: the prompt
  files it renders;
- `label`: what a report says about an arm that runs it (a control says what it is); `rule_keys`: the
  pairs stage's manifest keys its rule writes that metrics.json shows.

`selfreward.variants.register` enters it under its `name`; the stages it adds go into the stage table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from selfreward.checkpoint import load_tokenizer
from selfreward.files import read_jsonl
from selfreward.generation.base import Generator
from selfreward.judge import judge_candidates
from selfreward.pairs import best_and_worst, build_pairs, build_sft, token_lengths, windowed_select, within_window
from selfreward.round import Stage, StageName
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeConfig, VariantConfig

# The sampled candidates -> the judgments of them, for a rule that reads both.
JUDGED = (StageName.candidates, StageName.judge)


@dataclass
class Variant(VariantConfig):
    """The paper's round: best vs worst of M_t's own candidates, as judged by M_t."""

    stages: ClassVar[tuple[Stage, ...]] = ()
    skips: ClassVar[dict[str, str]] = {}
    judge_model: ClassVar[bool] = True
    label: ClassVar[str] = ""
    # the pairs stage's manifest keys that say how the rule shaped the pairs (metrics.json's pair_rule)
    rule_keys: ClassVar[tuple[str, ...]] = ("length_rho",)

    def validate(self, cfg: Config) -> None:
        """Raise a ConfigError when the rest of the config cannot run this variant."""

    def templates(self, cfg: Config) -> list[tuple[str, str]]:
        """(key, value) of the prompt templates it renders besides the round's."""
        return []

    def judge(self, generator: Generator | None, judge: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
        return judge_candidates(generator, judge, candidates, seed)

    def preference_pairs(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        """The round's DPO pairs and what was dropped (the pairs stage's manifest entry)."""
        return self.best_vs_worst(cfg, rd, t)

    def sft_examples(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        """The round's score-filtered SFT set and what was dropped."""
        rows, drops = self.above_threshold(cfg, rd, t)
        return self.in_length_window(cfg, rd, t, rows, drops), drops

    # -- building blocks of the rules --------------------------------------------------------
    def rho_at(self, t: int) -> float:
        """Round t's length window (`variant.rho`: one value per round, the last repeats)."""
        return self.rho[min(t, len(self.rho)) - 1]

    def best_vs_worst(self, cfg: Config, rd: RunDir, t: int, chosen_from: tuple[str, str] = JUDGED,
                      rejected_from: tuple[str, str] = JUDGED, pick=None) -> tuple[list[dict], dict]:
        """Best vs worst, ties dropped: chosen from `chosen_from`'s (candidates, judgments), rejected
        from `rejected_from`'s; `pick(lengths)` picks the two by length too; inside the length window
        when `variant.rho` is set."""
        extra = {}
        if rejected_from != chosen_from:  # rejected: the worst of another model's candidates
            extra["rejected_from"] = tuple(read_jsonl(rd.output(t, s)) for s in rejected_from)
        candidates, judgments = (read_jsonl(rd.output(t, s)) for s in chosen_from)
        if self.rho or pick:
            lengths = token_lengths(tokenizer(cfg, rd, t), candidates)
            select = pick(lengths) if pick else best_and_worst
            extra["select"] = windowed_select(lengths, self.rho_at(t), select) if self.rho else select
        pairs, drops = build_pairs(candidates, judgments, cfg.pairs.min_margin, **extra)
        for p in pairs:
            p["chosen_from"], p["rejected_from"] = chosen_from[0], rejected_from[0]
        if self.rho:
            drops["length_rho"] = self.rho_at(t)
        return pairs, drops

    def above_threshold(self, cfg: Config, rd: RunDir, t: int) -> tuple[list[dict], dict]:
        """The candidates whose every score clears its threshold (`pairs.sft_threshold(s)`)."""
        names, threshold = cfg.judge.score_names, cfg.pairs.sft_threshold
        thresholds = dict(zip(names, cfg.pairs.sft_thresholds or [threshold] * len(names)))
        candidates, judgments = (read_jsonl(rd.output(t, s)) for s in JUDGED)
        rows = [{**r, "kind": "response"} for r in build_sft(candidates, judgments, thresholds)]
        return rows, {"dropped_below_threshold": sum(j["score"] is not None for j in judgments) - len(rows)}

    def in_length_window(self, cfg: Config, rd: RunDir, t: int, rows: list[dict], drops: dict) -> list[dict]:
        """SFT: the rows inside the length window (all of them when `variant.rho` is unset)."""
        if not self.rho:
            return rows
        lengths = token_lengths(tokenizer(cfg, rd, t), read_jsonl(rd.output(t, StageName.candidates)))
        kept = within_window(rows, lengths, self.rho_at(t))
        drops["dropped_length_window"] = len(rows) - len(kept)
        return kept


def tokenizer(cfg: Config, rd: RunDir, t: int):
    return load_tokenizer(rd.policy(cfg, t), cfg)
