"""Stage 3, refine: the model judges its own candidates with an LLM-as-a-Judge template.

`judge=sampled`: K sampled judgments per candidate, each parsed with `parse_score`; the candidate's
score is the mean of the parsed ones (None if none parsed). Raw texts are kept, failures counted.
`judge=logprob`: the judge's reply is forced to start with "Score:" and the expected score is read
from the next-token probabilities of the score tokens 0..max_score (one forward pass, no sampling).
With `judge.reasoning=true` the judge first writes its judgment (greedy) and the score is read after
its own "Score:" (generative verification, GenRM: arXiv 2408.15240); the text is kept.
`judge.method=oracle` (recipe=testbed only; `selfreward.testbed` registers it in `JUDGES`) scores with
the checker: a control (the ceiling), not self-rewarding.

A template may ask for several named scores (`judge.score_names`, e.g. I-SHEEP's self-assessment
"Quality: X" and "Following: Y"): a judgment counts only when every one parses; each candidate gets
their means in `named_scores` and a ranking `score` (`judge.combine`: their mean or one of them).
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache
from typing import Callable

from selfreward.errors import ConfigError
from selfreward.generation.base import Generator, Sampling
from selfreward.schema import JudgeConfig, JudgeMethod
from selfreward.templates import Template, chat_prompt

_VALUE = r"\s*[*_]*\s*:\s*[*_]*\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?"
# Below this total probability on the score tokens, the judge was not answering with a score.
MIN_SCORE_MASS = 0.01


@lru_cache(maxsize=None)
def _pattern(label: str) -> re.Pattern:
    words = r"\s+".join(re.escape(w) for w in label.split())
    return re.compile(rf"(?<![a-z]){words}{_VALUE}", re.IGNORECASE)


def parse_score(text: str, max_score: float = 5, label: str = "Score") -> float | None:
    """The last "Score: X" (or "<label>: X") in `text`, or None.

    X is an integer or decimal, possibly wrapped in markdown emphasis (`**Score:** 4`, `Score: *4*`)
    and followed by "/5", "points" or punctuation. X outside [0, max_score], or a "/N" whose N is not
    max_score (a different scale), gives None.
    """
    matches = _pattern(label).findall(text or "")
    if not matches:
        return None
    value, scale = matches[-1]
    score = float(value)
    if scale and float(scale) != float(max_score):
        return None
    return score if 0 <= score <= max_score else None


def parse_scores(text: str, names: list[str], max_score: float = 5) -> dict[str, float | None]:
    return {name: parse_score(text, max_score, name) for name in names}


def combined(cfg: JudgeConfig, named: dict[str, float | None]) -> float | None:
    """The ranking score of one judgment (or of a candidate's means); None unless every score parsed."""
    if any(v is None for v in named.values()):
        return None
    return sum(named.values()) / len(named) if cfg.combine == "mean" else named[cfg.combine]


def judge_template(cfg: JudgeConfig) -> Template:
    return Template(cfg.template, ("instruction", "response"), key="judge.template")


def option_token_ids(tokenizer, label: str, options: list[str]) -> tuple[str, list[int]]:
    """(forced prefix, one token id per option) such that prefix + option tokenizes as the prefix's
    tokens plus exactly one token: the next-token distribution then holds each option's probability.
    Tries "Label: " + option, then "Label:" + " " + option, as tokenizers split spaces differently."""
    for prefix, sep in ((f"{label}: ", ""), (f"{label}:", " ")):
        base = tokenizer.encode(prefix, add_special_tokens=False)
        ids = []
        for option in options:
            full = tokenizer.encode(prefix + sep + option, add_special_tokens=False)
            if full[: len(base)] != base or len(full) != len(base) + 1:
                break
            ids.append(full[-1])
        else:
            return prefix + sep.rstrip(), ids
    raise ConfigError(
        f"this tokenizer does not make each of {options} a single token after '{label}:'; "
        "the logprob judge and the win-rate evaluation need that"
    )


def reason_then_read(generator: Generator, rendered: list[str], label: str, options: list[str],
                     max_new_tokens: int, desc: str) -> tuple[list[str], list[list[float]]]:
    """(reasoning, option probabilities) per prompt: the judge first writes greedily, and whatever it
    wrote before its first "<label>:" is kept as its reasoning; then the probability of each option
    is read after "<label>:" following that reasoning. The verdict is read, never parsed, so a
    judgment that reasons but stumbles on the format still gives a score."""
    prefix, ids = option_token_ids(generator.tokenizer, label, options)
    texts = generator.generate(rendered, Sampling(0.0, 1.0, max_new_tokens), desc=f"{desc}: reasoning")
    stop = re.compile(rf"{re.escape(label)}\s*:", re.IGNORECASE)
    written = [stop.split(t[0], maxsplit=1) for t in texts]
    # Read after the reasoning as the judge wrote it up to its label; one cut off before the label
    # gets it on a line of its own.
    lead = [parts[0] if len(parts) > 1 else (parts[0] + "\n" if parts[0] else "") for parts in written]
    probs = generator.next_token_probs([r + w + prefix for r, w in zip(rendered, lead)], ids, desc=f"{desc}: verdict")
    return [w.strip() for w in lead], probs


def score_token_ids(tokenizer, max_score: int, label: str = "Score") -> tuple[str, list[int]]:
    """(forced prefix, token id of each score 0..max_score)."""
    return option_token_ids(tokenizer, label, [str(s) for s in range(max_score + 1)])


# The judges, one per `judge.method`, each (generator, settings, candidates, seed) -> one row per
# candidate: {score, scores, named_scores, judgments[, score_probs]}. The testbed registers the oracle,
# so this module never reaches up into it.
JudgeFn = Callable[[Generator | None, JudgeConfig, list[dict], int], list[dict]]
JUDGES: dict[JudgeMethod, JudgeFn] = {}


def register(method: JudgeMethod) -> Callable[[JudgeFn], JudgeFn]:
    def add(fn: JudgeFn) -> JudgeFn:
        JUDGES[method] = fn
        return fn

    return add


def judge_candidates(generator: Generator | None, cfg: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
    """Return [{prompt_id, candidate_id, score, scores, named_scores, judgments}] in candidate order."""
    if cfg.method not in JUDGES:
        raise ConfigError(f"judge.method={cfg.method.value} has no judge registered (registered: "
                          f"{', '.join(m.value for m in JUDGES)}); the oracle is registered by selfreward.testbed.")
    return with_ids(candidates, JUDGES[cfg.method](generator, cfg, candidates, seed))


def own_judge(cfg: JudgeConfig) -> JudgeConfig:
    """The judge settings a model's judging is measured with: the round's, or in the oracle arm (whose
    rounds the checker scored) the model's own logprob judge."""
    return replace(cfg, method=JudgeMethod.logprob) if cfg.method is JudgeMethod.oracle else cfg


def describe(cfg: JudgeConfig) -> str:
    """How a model's judging is measured, in words for a report: "logprob", "sampled (3 judgments)",
    "logprob after its own check"."""
    own = own_judge(cfg)
    if own.method is JudgeMethod.sampled:
        return f"sampled ({own.samples} judgment{'s' * (own.samples != 1)})"
    return own.method.value + (" after its own check" if own.reasoning else "")


def with_ids(candidates: list[dict], rows: list[dict]) -> list[dict]:
    return [{"prompt_id": c["prompt_id"], "candidate_id": c["candidate_id"], **row} for c, row in zip(candidates, rows)]


def scored(cfg: JudgeConfig, scores: list[float]) -> list[dict]:
    """Rows for scores that come without a judgment's text (the controls: random, oracle)."""
    name = cfg.score_names[0]
    return [{"score": s, "scores": [s], "named_scores": {name: s}, "judgments": []} for s in scores]


def _rendered(generator: Generator, cfg: JudgeConfig, candidates: list[dict]) -> list[str]:
    template = judge_template(cfg)
    return [chat_prompt(generator.tokenizer, template.render(instruction=c["prompt"], response=c["response"]))
            for c in candidates]


@register(JudgeMethod.logprob)
def logprob_judge(generator: Generator, cfg: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
    rendered = _rendered(generator, cfg, candidates)
    name = cfg.score_names[0]  # config validation allows one score with this method
    if cfg.reasoning:
        texts, probs = reason_then_read(generator, rendered, name, [str(s) for s in range(cfg.max_score + 1)],
                                        cfg.max_new_tokens, "judge (reasoning)")
    else:
        prefix, ids = score_token_ids(generator.tokenizer, cfg.max_score, name)
        texts = [None] * len(rendered)
        probs = generator.next_token_probs([r + prefix for r in rendered], ids, desc="judge (logprob)")
    rows = []
    for p, text in zip(probs, texts):
        mass = sum(p)
        score = sum(s * q for s, q in enumerate(p)) / mass if mass >= MIN_SCORE_MASS else None
        rows.append({"score": score, "scores": [score], "named_scores": {name: score},
                     "judgments": [] if text is None else [text], "score_probs": p})
    return rows


@register(JudgeMethod.sampled)
def sampled_judge(generator: Generator, cfg: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, n=cfg.samples, seed=seed)
    rows = []
    for judgments in generator.generate(_rendered(generator, cfg, candidates), sampling, desc="judge (sampled)"):
        named = [parse_scores(j, cfg.score_names, cfg.max_score) for j in judgments]
        scores = [combined(cfg, n) for n in named]
        complete = [n for n, s in zip(named, scores) if s is not None]
        means = {k: sum(n[k] for n in complete) / len(complete) if complete else None for k in cfg.score_names}
        rows.append({"score": combined(cfg, means), "scores": scores, "named_scores": means, "judgments": judgments})
    return rows
