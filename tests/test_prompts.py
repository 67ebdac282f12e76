import json

import pytest

from selfreward.data import seed_path
from selfreward.generation.base import Sampling
from selfreward.prompts import NearDuplicateIndex, extract_instruction, generate_prompts, meta_text
from selfreward.schema import PromptsConfig


class ScriptedGenerator:
    """Stand-in backend: replies from a fixed list, records what it was asked."""

    tokenizer = None

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []

    def generate(self, prompts, sampling: Sampling, desc=""):
        self.requests += prompts
        return [[self.replies.pop(0) if self.replies else ""] for _ in prompts]


class EchoTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "USER: " + messages[0]["content"] + "\nASSISTANT: "


def test_extract_instruction():
    assert extract_instruction("Task: Name a red fruit.\nmore") == "Name a red fruit."
    assert extract_instruction('\n\n  1. "List two oceans."') == "List two oceans."
    assert extract_instruction("New task - Describe rain.") == "Describe rain."
    assert extract_instruction("  \n ") is None


# Replies SmolLM2-135M-Instruct wrote for the self-instruct request (runs of recipe=smollm2, 2026-12-01)
SMOLLM2_META = [
    "One new task for the assistant:",
    "Here's a new task:",
    "I'd like to introduce myself to you, and I'm happy to meet you. How may I assist you today?",
    "I'll give you an example of a renewable energy source. Here's how you can answer:",
    "I'm here to help with any task that requires creative problem-solving. What can I help with?",
    "The assistant will respond with one new task: \"Write a one-sentence story about a dragon.",
    "Here is a new task: The original task asked a simple question.",
    "Provide a solution to the given task, focusing on three tips for improving sleep:",
    "The answer to this task is a different one. It is not the answer to the previous one.",
]
SMOLLM2_TASKS = [
    "Write a one-sentence story about a dragon that is a simple adventure with a knight.",
    'What is the plural of "leaf" and what is the plural of "city"?',
    'Write the sentence "The power is a tool." in all lowercase letters.',
    'Give the opposite of the word "light" (The New York Times)',
]


@pytest.mark.parametrize("text", SMOLLM2_META)
def test_meta_text_is_recognised(text):
    assert meta_text(text)


@pytest.mark.parametrize("text", SMOLLM2_TASKS)
def test_tasks_are_not_meta_text(text):
    assert not meta_text(text)


@pytest.mark.parametrize("kind", ["ift", "eft"])
def test_no_shipped_seed_instruction_counts_as_meta_text(kind):
    lines = seed_path(None, kind).read_text().splitlines()
    assert lines and not [r["instruction"] for r in map(json.loads, lines) if meta_text(r["instruction"])]


def test_meta_text_is_dropped_and_counted_unless_switched_off():
    replies = ["Here's a new task:", "Describe a rainy day in two sentences.", "I'm here to help you today.",
               "Explain what a volcano is."]
    seeds = ["Name three primary colors.", "What is gravity?"]
    for drop, expected, dropped in [(True, [replies[1], replies[3]], 2), (False, replies[:2], 0)]:
        gen = ScriptedGenerator(replies)
        gen.tokenizer = EchoTokenizer()
        cfg = PromptsConfig(num_prompts=2, num_shots=1, max_attempts=3, drop_meta=drop)
        records, stats = generate_prompts(gen, cfg, seeds, seed=0)
        assert [r["prompt"] for r in records] == expected and stats.get("dropped_meta", 0) == dropped


def test_near_duplicate_index():
    index = NearDuplicateIndex(max_similarity=0.5)
    index.add("Name three primary colors.")
    assert index.why_duplicate("name three PRIMARY colors") == "exact_duplicate"
    assert index.why_duplicate("Name three primary colors of paint.") == "near_duplicate"
    assert index.why_duplicate("Explain how rain forms.") is None


def test_generate_prompts_filters_and_counts():
    gen = ScriptedGenerator(
        [
            "Task: Describe a rainy day in two sentences.",
            "Name three primary colors.",  # copies a seed task
            "Describe a rainy day in two sentences!",  # duplicate of the first
            "Hi",  # too short
            "",  # nothing extracted
            "Explain what a volcano is.",
        ]
    )
    gen.tokenizer = EchoTokenizer()
    cfg = PromptsConfig(num_prompts=2, num_shots=2, max_attempts=3, min_words=3)
    seeds = ["Name three primary colors.", "What is gravity?", "Give two reasons to exercise."]
    records, stats = generate_prompts(gen, cfg, seeds, seed=0)
    assert records == [
        {"id": "p00000", "prompt": "Describe a rainy day in two sentences."},
        {"id": "p00001", "prompt": "Explain what a volcano is."},
    ]
    assert stats["dropped_exact_duplicate"] == 2 and stats["dropped_length"] == 1 and stats["dropped_empty"] == 1
    assert stats["requested"] == 6
    # every request is a chat-rendered k-shot prompt of seed tasks
    assert all(r.startswith("USER: ") and r.count("Task: ") == 2 for r in gen.requests)


def test_prompts_that_copy_held_out_or_earlier_prompts_are_dropped():
    gen = ScriptedGenerator(["Describe how rain forms.", "Name the capital of France please.",
                             "Explain what a volcano is.", "Give one use of copper wire.", "List two warm colours."])
    gen.tokenizer = EchoTokenizer()
    cfg = PromptsConfig(num_prompts=2, num_shots=1, max_attempts=3, min_words=3, max_similarity=0.5)
    records, stats = generate_prompts(gen, cfg, ["What is gravity?"], seed=0,
                                      earlier=["Explain what a volcano is."],
                                      heldout=["Describe how rain forms.", "Name the capital of France."])
    assert [r["prompt"] for r in records] == ["Give one use of copper wire.", "List two warm colours."]
    assert stats["dropped_heldout"] == 2 and stats["dropped_exact_duplicate"] == 1


def test_generate_prompts_respects_budget():
    gen = ScriptedGenerator([])
    gen.tokenizer = EchoTokenizer()
    records, stats = generate_prompts(gen, PromptsConfig(num_prompts=3, max_attempts=2), ["a b c"], seed=0)
    assert records == [] and stats["requested"] == 6


def test_the_console_line_says_how_many_were_kept_and_why_the_rest_went():
    from selfreward.prompts import describe

    stats = {"kept": 8, "requested": 20, "dropped_meta": 6, "dropped_exact_duplicate": 6, "passes": 2}
    assert describe(stats) == "kept 8 of 20 written (dropped: 6 exact_duplicate, 6 meta)"
    assert describe({"kept": 2, "requested": 2}) == "kept 2 of 2 written"
