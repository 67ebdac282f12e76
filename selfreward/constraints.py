"""Instruction-following constraints a program checks (IFEval-style): the family of the real-model
testbed (issue #27), our own code (IFEval's reference implementation downloads NLTK data at import).

A constrained prompt is an ordinary prompt followed by one sentence that states a constraint:
"Write a short paragraph about tides. Do not use any commas." That sentence is all a checker needs:
`parse` reads the constraint back from the prompt's text, `check` decides a response, so a prompt
written by the model (self-instruct) with a constraint appended is checkable like a shipped one.

Every check also asks for a real answer, so that an empty, one-word or off-topic response never
passes: at least `MIN_WORDS` words, and at least one of the prompt's topic words (its words of five
letters or more outside the constraint sentence and a stop list, matched on their first five letters,
in any case).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Callable

MIN_WORDS = 5
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_STOP = frozenset("""about above after again against answer based because before being below between could
describe detail details every explain first following give their there these thing things think those
through under using what where which while whose would write short paragraph words sentence sentences
please brief simple provide response answers""".split())

# Drawn from when a constraint takes a word or a phrase: plain words a paragraph on most topics can use.
KEYWORDS = ("important", "simple", "example", "people", "history", "future", "nature", "world")
AVOIDED = ("very", "really", "also", "many", "because", "however")
CLOSINGS = ("Is there anything else I can help with?", "That is all for now.", "Thank you for reading.")


@dataclass(frozen=True)
class Constraint:
    name: str
    template: str  # the sentence, str.format-ed with the arguments
    pattern: str  # reads the arguments back from the sentence
    draw: Callable[[random.Random], tuple]
    test: Callable[..., bool]  # test(response, *args)

    def render(self, *args) -> str:
        return self.template.format(*args)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _count_word(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE))


def _bullets(text: str) -> int:
    return sum(bool(re.match(r"\s*[*-] \S", line)) for line in text.splitlines())


def _paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def _json(text: str) -> bool:
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        return isinstance(json.loads(body), (dict, list))
    except ValueError:
        return False


def _has_letters(text: str) -> bool:
    return any(c.isalpha() for c in text)


FAMILY: dict[str, Constraint] = {c.name: c for c in (
    Constraint("max_words", "Answer in fewer than {} words.", r"Answer in fewer than (\d+) words\.",
               lambda rng: (rng.choice((20, 30, 40)),), lambda r, n: len(_words(r)) < int(n)),
    Constraint("min_words", "Answer in at least {} words.", r"Answer in at least (\d+) words\.",
               lambda rng: (rng.choice((60, 80, 100)),), lambda r, n: len(_words(r)) >= int(n)),
    Constraint("include_keyword", 'Include the word "{}" in your answer.', r'Include the word "(\w+)" in your answer\.',
               lambda rng: (rng.choice(KEYWORDS),), lambda r, w: _count_word(r, w) >= 1),
    Constraint("exclude_keyword", 'Do not use the word "{}".', r'Do not use the word "(\w+)"\.',
               lambda rng: (rng.choice(AVOIDED),), lambda r, w: _count_word(r, w) == 0),
    Constraint("keyword_frequency", 'Use the word "{}" at least {} times.', r'Use the word "(\w+)" at least (\d+) times\.',
               lambda rng: (rng.choice(KEYWORDS), rng.choice((2, 3))), lambda r, w, n: _count_word(r, w) >= int(n)),
    Constraint("no_commas", "Do not use any commas.", r"Do not use any commas\.", lambda rng: (),
               lambda r: "," not in r),
    Constraint("lowercase", "Write your whole answer in lowercase letters.",
               r"Write your whole answer in lowercase letters\.", lambda rng: (), lambda r: r == r.lower()),
    Constraint("uppercase", "Write your whole answer in capital letters.",
               r"Write your whole answer in capital letters\.", lambda rng: (), lambda r: r == r.upper()),
    Constraint("bullets", 'Answer with exactly {} bullet points, each line starting with "* ".',
               r'Answer with exactly (\d+) bullet points, each line starting with "\* "\.',
               lambda rng: (rng.choice((2, 3, 4)),), lambda r, n: _bullets(r) == int(n)),
    Constraint("paragraphs", "Write exactly {} paragraphs, separated by a blank line.",
               r"Write exactly (\d+) paragraphs, separated by a blank line\.",
               lambda rng: (rng.choice((2, 3)),), lambda r, n: _paragraphs(r) == int(n)),
    Constraint("title", "Give your answer a title in double angular brackets, like <<a title>>.",
               r"Give your answer a title in double angular brackets, like <<a title>>\.", lambda rng: (),
               lambda r: re.search(r"<<[^<>\n]*[A-Za-z][^<>\n]*>>", r) is not None),
    Constraint("end_phrase", 'End your answer with the exact sentence "{}"',
               r'End your answer with the exact sentence "([^"]+)"', lambda rng: (rng.choice(CLOSINGS),),
               lambda r, p: r.rstrip().endswith(p)),
    Constraint("postscript", 'End with a postscript that starts with "P.S."',
               r'End with a postscript that starts with "P\.S\."', lambda rng: (),
               lambda r: re.search(r"(^|\n)\s*P\.S\.\s*\S", r) is not None),
    Constraint("quotes", "Wrap your whole answer in double quotation marks.",
               r"Wrap your whole answer in double quotation marks\.", lambda rng: (),
               lambda r: len(r.strip()) > 2 and r.strip()[0] == '"' and r.strip()[-1] == '"'),
    Constraint("json", "Give your whole answer as valid JSON.", r"Give your whole answer as valid JSON\.",
               lambda rng: (), lambda r: _json(r)),
)}


def constrain(prompt: str, name: str, rng: random.Random) -> str:
    """`prompt` with a constraint of type `name` appended (its arguments drawn from `rng`)."""
    c = FAMILY[name]
    return f"{prompt.rstrip()} {c.render(*c.draw(rng))}"


def parse(prompt: str) -> tuple[Constraint, tuple, str] | None:
    """(the constraint, its arguments, the prompt without it) of a constrained prompt, else None."""
    for c in FAMILY.values():
        m = re.search(rf"\s*{c.pattern}\s*$", prompt)
        if m:
            return c, m.groups(), prompt[: m.start()]
    return None


def topic_words(prompt: str) -> set[str]:
    """The first five letters of each content word of the prompt (its constraint sentence left out)."""
    parsed = parse(prompt)
    text = parsed[2] if parsed else prompt
    return {w.lower()[:5] for w in _words(text) if len(w) >= 5 and w.lower() not in _STOP}


def real_answer(prompt: str, response: str) -> bool:
    """At least MIN_WORDS words, one of them on the prompt's topic (any case, any inflection that
    keeps the first five letters)."""
    words = _words(response)
    topics = topic_words(prompt)
    return len(words) >= MIN_WORDS and _has_letters(response) and (
        not topics or any(w.lower()[:5] in topics for w in words))


def check(prompt: str, response: str) -> bool | None:
    """Whether `response` follows the prompt's constraint and is a real answer; None when the prompt
    has no constraint of this family."""
    parsed = parse(prompt)
    if parsed is None:
        return None
    c, args, _ = parsed
    return real_answer(prompt, response) and bool(c.test(response, *args))


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


# What a judge that checks before it scores writes (`explain`): the quantity the constraint is about,
# measured on the response (GenRM-style verification: the check is easier than writing to it).
MEASURES: dict[str, Callable[..., str]] = {
    "max_words": lambda r, n: _count(len(_words(r)), "word"),
    "min_words": lambda r, n: _count(len(_words(r)), "word"),
    "include_keyword": lambda r, w: f'"{w}" {_count(_count_word(r, w), "time")}',
    "exclude_keyword": lambda r, w: f'"{w}" {_count(_count_word(r, w), "time")}',
    "keyword_frequency": lambda r, w, n: f'"{w}" {_count(_count_word(r, w), "time")}',
    "no_commas": lambda r: _count(r.count(","), "comma"),
    "lowercase": lambda r: _count(sum(c.isupper() for c in r), "capital letter"),
    "uppercase": lambda r: _count(sum(c.islower() for c in r), "lowercase letter"),
    "bullets": lambda r, n: _count(_bullets(r), "bullet point"),
    "paragraphs": lambda r, n: _count(_paragraphs(r), "paragraph"),
    "title": lambda r: "a title" if FAMILY["title"].test(r) else "no title",
    "end_phrase": lambda r, p: "ends with it" if r.rstrip().endswith(p) else "ends otherwise",
    "postscript": lambda r: "a P.S." if FAMILY["postscript"].test(r) else "no P.S.",
    "quotes": lambda r: "in quotes" if FAMILY["quotes"].test(r) else "not in quotes",
    "json": lambda r: "valid JSON" if _json(r) else "not JSON",
}


def explain(prompt: str, response: str) -> str:
    """The check written out: the constrained quantity, then whether the answer is a real one
    ("34 words, on topic"; "2 commas, too short"; "0 capital letters, off topic")."""
    c, args, _ = parse(prompt)
    words = _words(response)
    if len(words) < MIN_WORDS or not _has_letters(response):
        real = "too short"
    else:
        real = "on topic" if real_answer(prompt, response) else "off topic"
    return f"{MEASURES[c.name](response, *args)}, {real}"
