"""Text helpers shared by the stages, the metrics and the evaluation."""

from __future__ import annotations

import re


def normalize(text: str) -> str:
    """Lowercased words only: the form in which two prompts count as the same prompt."""
    return " ".join(re.findall(r"\w+", text.lower()))


def token_counts(tokenizer, texts: list[str]) -> list[int]:
    """Tokens in each text, without special tokens (the length the model writes)."""
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
