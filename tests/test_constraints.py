"""The instruction-following checkers: every type with hand-written passing and failing answers, and
every type refusing an empty, a one-word and an off-topic answer."""

import random
import re

import pytest

from selfreward import constraints
from selfreward.constraints import FAMILY, check, constrain, parse

BASE = "Write a short paragraph about ocean tides."
TIDES = "Ocean tides rise and fall twice a day as the moon pulls on the water"

# (type, arguments, a response that passes, one that fails only the constraint)
CASES = [
    ("max_words", (20,), f"{TIDES}.", f"{TIDES} and the sun pulls on it too, so the oceans move in a steady rhythm."),
    ("min_words", (60,), " ".join([TIDES] * 5) + ".", f"{TIDES}."),
    ("include_keyword", ("nature",), f"{TIDES}, a rhythm of nature.", f"{TIDES}."),
    ("exclude_keyword", ("very",), f"{TIDES}.", f"{TIDES}, very slowly."),
    ("keyword_frequency", ("world", 2), f"{TIDES} of the world, all over the world.", f"{TIDES} of the world."),
    ("no_commas", (), f"{TIDES}.", f"{TIDES}, twice a day."),
    ("lowercase", (), f"{TIDES.lower()}.", f"{TIDES}."),
    ("uppercase", (), f"{TIDES.upper()}.", f"{TIDES}."),
    ("bullets", (3,), "* Tides rise.\n* Tides fall.\n* The moon pulls the ocean water.",
     "* Tides rise.\n* Tides fall.\nThe moon pulls the ocean water."),
    ("paragraphs", (2,), f"{TIDES}.\n\nThe sun adds a smaller pull on the tides.", f"{TIDES}. The sun pulls too."),
    ("title", (), f"<<Ocean Tides>>\n{TIDES}.", f"Ocean Tides\n{TIDES}."),
    ("end_phrase", ("That is all for now.",), f"{TIDES}. That is all for now.", f"{TIDES}. That is all."),
    ("postscript", (), f"{TIDES}.\nP.S. Watch the beach at noon.", f"{TIDES}. PS watch the beach."),
    ("quotes", (), f'"{TIDES}."', f'"{TIDES}.'),
    ("json", (), '{"topic": "ocean tides", "summary": "' + TIDES + '"}', f"topic: ocean tides. {TIDES}"),
]


def _off_topic(m: re.Match) -> str:
    word = {"ocean": "mountain", "tides": "goats", "water": "grass"}[m.group(0).lower()]
    return word.upper() if m.group(0).isupper() else word.capitalize() if m.group(0)[0].isupper() else word


def test_every_type_has_a_case_and_there_are_at_least_twelve():
    assert {name for name, *_ in CASES} == set(FAMILY) and len(FAMILY) >= 12


@pytest.mark.parametrize("name,args,good,bad", CASES, ids=[c[0] for c in CASES])
def test_a_checker_passes_what_follows_it_and_fails_what_does_not(name, args, good, bad):
    prompt = f"{BASE} {FAMILY[name].render(*args)}"
    assert check(prompt, good) is True
    assert check(prompt, bad) is False


@pytest.mark.parametrize("name,args,good,bad", CASES, ids=[c[0] for c in CASES])
def test_no_type_passes_an_empty_short_or_off_topic_answer(name, args, good, bad):
    prompt = f"{BASE} {FAMILY[name].render(*args)}"
    off_topic = re.sub(r"(?i)\b(ocean|tides|water)\b", _off_topic, good)  # the same answer, on goats
    for response in ("", "   ", '""', "Tides.", off_topic):
        assert check(prompt, response) is False, (name, response)


def test_constraints_read_back_from_the_prompt_they_were_appended_to():
    rng = random.Random(0)
    for name, c in FAMILY.items():
        for _ in range(20):
            prompt = constrain(BASE, name, rng)
            got, args, rest = parse(prompt)
            assert got is c and rest == BASE and c.render(*args) == prompt[len(BASE) + 1:]


def test_an_unconstrained_prompt_is_not_checked_and_topics_leave_the_constraint_out():
    assert check(BASE, f"{TIDES}.") is None and parse("Explain photosynthesis.") is None
    assert constraints.topic_words(f"{BASE} {FAMILY['include_keyword'].render('nature')}") == {"ocean", "tides"}
