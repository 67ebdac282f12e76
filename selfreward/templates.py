"""Plain-text prompt templates from `prompts/` with `{name}` placeholders.

Only the placeholders a stage declares are substituted, and nothing is evaluated, so a template may
contain any other braces (JSON, code) and cannot run code.
"""

from __future__ import annotations

import re
from pathlib import Path

from selfreward.errors import ConfigError
from selfreward.resources import find_prompt


class Template:
    def __init__(self, path: str | Path, required: tuple[str, ...], key: str = "template"):
        self.path = find_prompt(str(path), key)
        self.text = self.path.read_text(encoding="utf-8")
        self.required = required
        missing = [name for name in required if "{" + name + "}" not in self.text]
        if missing:
            raise ConfigError(
                f"'{key}': template {self.path} lacks the placeholder(s) "
                + ", ".join("{" + m + "}" for m in missing)
            )
        self._pattern = re.compile(r"\{(" + "|".join(map(re.escape, required)) + r")\}")

    def render(self, **values: str) -> str:
        return self._pattern.sub(lambda m: str(values[m.group(1)]), self.text).strip()


def chat_prompt(tokenizer, user_message: str) -> str:
    """The text a generator continues: one user turn plus the assistant header, via the chat template.

    TRL renders training prompts with the same call (add_generation_prompt=True), so what the model
    sees while generating and while training is the same string.
    """
    return render_chat(tokenizer, [{"role": "user", "content": user_message}])


def ensure_chat_template(tokenizer, chat_template: str | None):
    """Give a tokenizer without a chat template (a base checkpoint) the one `model.chat_template`
    names; the trainers save it with every round's model, so later stages find it there."""
    if chat_template and not getattr(tokenizer, "chat_template", None):
        path = find_prompt(chat_template, "model.chat_template", ".jinja")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    return tokenizer


def render_chat(tokenizer, messages: list[dict]) -> str:
    """A conversation so far plus the assistant header, via the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"The tokenizer at {tokenizer.name_or_path} has no chat template; set model.chat_template="
            "plain_chat.jinja (shipped in prompts/) or a Jinja file of your own, or save one with "
            "`tokenizer.chat_template = ...; tokenizer.save_pretrained(path)`."
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
