from selfreward.generation.base import Sampling
from selfreward.prompts import NearDuplicateIndex, extract_instruction, generate_prompts
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
