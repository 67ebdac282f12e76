"""Stage 1, acquire: the model writes new prompts from k-shot samples of the seed instructions.

Self-instruct style: each request shows `num_shots` random seed tasks; the first line of the reply
becomes the new prompt. Exact duplicates (after normalization) and near-duplicates (word-bigram
Jaccard above `max_similarity`) of a seed task, an earlier round's prompt or an already kept prompt
are dropped, as are prompts outside [min_words, max_words]. With `prompts.drop_meta` (the default), a
reply that talks about the task instead of being one ("Here's a new task:", "I'm here to help ...",
"The assistant will respond with ...") is dropped as `dropped_meta`: SmolLM2-135M-Instruct writes
those for about 40 % of its requests (docs/real-models.md). A prompt that copies or nearly copies a
held-out evaluation prompt is dropped and counted apart (`dropped_heldout`): training on it would
leak the evaluation into the model.

With `prompts.evolve=true`, `evolve_prompts` then rewrites a share of the kept prompts into harder
versions with `prompts/evolve.txt` (Evol-Instruct's "in-depth" evolving, as WizardLM does); a rewrite
that is empty, of bad length or a duplicate leaves the original in place.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import Callable

from selfreward.generation.base import Generator, Sampling
from selfreward.schema import PromptsConfig
from selfreward.templates import Template, chat_prompt
from selfreward.text import normalize

_LEAD = re.compile(r"^(?:new\s+)?(?:task|instruction|prompt|question)\s*\d*\s*[:.\-]\s*", re.I)
_NUMBER = re.compile(r"^(?:\d+[.)]|[-*•])\s*")
# Replies that announce, introduce or discuss a task rather than state one. Matched on the extracted
# first line; deliberately narrow (a task may well mention an assistant or end in a question mark).
# A first-person request ("I need a recipe ...") is dropped too: the price of a simple rule, paid in
# another request to the prompt writer.
_META = re.compile(
    r"""^(?:here(?:'s|\s+is|\s+are)|sure\b|okay\b|ok\b|certainly\b|of course\b|absolutely\b"""
    r"""|i\b|i'(?:m|ll|d|ve)\b|my\b|as an ai\b|hello\b|hi\b|the (?:assistant|ai)\b|this ai\b"""
    r"""|(?:one|a)? ?new task\b)"""
    r"""|\b(?:new|this|the|that|previous|original|above|given|following) (?:task|tasks)\b""",
    re.I,
)


def meta_text(prompt: str) -> bool:
    """True for a reply that is about a task, not a task: a lead-in ending in ':' ("Here's a new task:"),
    an opener in the writer's own voice ("I'll ...", "Sure ..."), or talk of "the task"."""
    return prompt.rstrip().endswith(":") or bool(_META.search(prompt.strip().replace("\u2019", "'")))


def extract_instruction(text: str) -> str | None:
    """The first non-empty line of a reply, without 'Task:'-style labels, list markers or quotes."""
    for line in text.splitlines():
        line = _NUMBER.sub("", _LEAD.sub("", line.strip())).strip().strip("\"'`").strip()
        if line:
            return line
    return None


def _bigrams(text: str) -> frozenset:
    words = normalize(text).split()
    return frozenset(zip(words, words[1:])) if len(words) > 1 else frozenset(words)


class NearDuplicateIndex:
    """Word-bigram Jaccard against everything added so far; an inverted index keeps it sub-quadratic.
    Texts added as `heldout` make a match a "heldout" drop instead of a duplicate."""

    def __init__(self, max_similarity: float):
        self.max_similarity = max_similarity
        self.exact: dict[str, bool] = {}  # normalized text -> held out
        self.grams: list[frozenset] = []
        self.heldout: list[bool] = []
        self.postings: dict = defaultdict(list)

    def add(self, text: str, heldout: bool = False) -> None:
        key = normalize(text)
        self.exact[key] = self.exact.get(key, False) or heldout
        grams = _bigrams(text)
        for g in grams:
            self.postings[g].append(len(self.grams))
        self.grams.append(grams)
        self.heldout.append(heldout)

    def why_duplicate(self, text: str) -> str | None:
        key = normalize(text)
        if key in self.exact:
            return "heldout" if self.exact[key] else "exact_duplicate"
        grams = _bigrams(text)
        shared = Counter(i for g in grams for i in self.postings.get(g, ()))
        near = [i for i, n in shared.items() if n / (len(grams) + len(self.grams[i]) - n) > self.max_similarity]
        if near:
            return "heldout" if any(self.heldout[i] for i in near) else "near_duplicate"
        return None


def instruction_request(template: Template, shots: list[str]) -> str:
    """The self-instruct request for these seed tasks (before the chat template)."""
    return template.render(examples="\n".join(f"Task: {s}" for s in shots))


def generate_prompts(
    generator: Generator,
    cfg: PromptsConfig,
    seed_instructions: list[str],
    seed: int,
    resumed: tuple[list[str], dict] = ((), {}),
    on_pass: Callable[[list[dict], dict], None] | None = None,
    reject: Callable[[str], str | None] | None = None,
    earlier: list[str] = (),
    heldout: list[str] = (),
) -> tuple[list[dict], dict]:
    """Return ([{id, prompt}], stats). Generates in passes until `num_prompts` are kept or the
    budget of `num_prompts * max_attempts` requests is spent.

    Each pass depends only on (seed, pass number, prompts kept so far), so a run resumed from
    `resumed` = (kept prompts, stats) after any pass continues exactly as an uninterrupted one;
    `on_pass(new records, stats)` is called after every pass to commit them. `reject(prompt)` may
    name a reason to drop a prompt (the testbed drops tasks its checker cannot parse). `earlier`
    rounds' prompts are duplicates like the seed tasks; `heldout` evaluation prompts are dropped as
    "heldout".
    """
    template = Template(cfg.template, ("examples",), key="prompts.template")
    index = NearDuplicateIndex(cfg.max_similarity)
    for s in [*seed_instructions, *earlier]:
        index.add(s)
    for s in heldout:
        index.add(s, heldout=True)
    kept, stats = list(resumed[0]), Counter(resumed[1])
    for text in kept:
        index.add(text)
    budget = cfg.num_prompts * cfg.max_attempts
    while len(kept) < cfg.num_prompts and stats["requested"] < budget:
        rng = random.Random(seed * 1_000_003 + stats["passes"])
        n = min(2 * (cfg.num_prompts - len(kept)), budget - stats["requested"])
        requests = []
        for _ in range(n):
            shots = rng.sample(seed_instructions, min(cfg.num_shots, len(seed_instructions)))
            requests.append(chat_prompt(generator.tokenizer, instruction_request(template, shots)))
        sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, n=1, seed=rng.randrange(2**31))
        replies = generator.generate(requests, sampling, desc=f"prompts ({len(kept)}/{cfg.num_prompts})")
        stats["requested"] += n
        stats["passes"] += 1
        new = []
        for (reply,) in replies:
            text = extract_instruction(reply)
            reason = None
            if text is None:
                reason = "empty"
            elif not cfg.min_words <= len(text.split()) <= cfg.max_words:
                reason = "length"
            elif cfg.drop_meta and meta_text(text):
                reason = "meta"
            else:
                reason = (reject and reject(text)) or index.why_duplicate(text)
            if reason:
                stats[f"dropped_{reason}"] += 1
            elif len(kept) < cfg.num_prompts:
                index.add(text)
                new.append({"id": f"p{len(kept):05d}", "prompt": text})
                kept.append(text)
        if on_pass:
            on_pass(new, dict(stats))
    records = [{"id": f"p{i:05d}", "prompt": p} for i, p in enumerate(kept)]
    return records, {"kept": len(records), **stats}


def describe(stats: dict) -> str:
    """One line for the console: how many prompts were kept of those written, and why the rest went."""
    drops = ", ".join(f"{v} {k.removeprefix('dropped_')}" for k, v in sorted(stats.items())
                      if k.startswith("dropped_") and v)
    return f"kept {stats['kept']} of {stats.get('requested', 0)} written" + (
        f" (dropped: {drops})" if drops else "")


def evolve_prompts(generator: Generator, cfg: PromptsConfig, records: list[dict], seed: int) -> tuple[list[dict], dict]:
    """Return (records with `round(evolve_share * n)` of them rewritten, stats). A rewritten record keeps
    its id and gets `evolved_from` (the original prompt)."""
    template = Template(cfg.evolve_template, ("instruction",), key="prompts.evolve_template")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(records)), round(len(records) * cfg.evolve_share)))
    requests = [chat_prompt(generator.tokenizer, template.render(instruction=records[i]["prompt"])) for i in chosen]
    sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, n=1, seed=rng.randrange(2**31))
    replies = generator.generate(requests, sampling, desc="evolve prompts") if requests else []
    taken = {normalize(r["prompt"]) for r in records}
    out, stats = list(records), Counter()
    for i, (reply,) in zip(chosen, replies):
        text = extract_instruction(reply)
        if text is None or not cfg.min_words <= len(text.split()) <= cfg.max_words or normalize(text) in taken:
            stats["evolve_kept_original"] += 1
            continue
        taken.add(normalize(text))
        out[i] = {**records[i], "prompt": text, "evolved_from": records[i]["prompt"]}
        stats["evolved"] += 1
    return out, dict(stats)
