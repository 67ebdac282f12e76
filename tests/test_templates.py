import pytest

from selfreward.errors import ConfigError
from selfreward.judge import judge_template
from selfreward.schema import JudgeConfig
from selfreward.templates import Template, chat_prompt


def test_shipped_judge_template_renders_rubric():
    text = judge_template(JudgeConfig()).render(instruction="What is 2 plus 2?", response="4.")
    assert "Question: What is 2 plus 2?" in text and "Response: 4." in text
    assert "Score: <points>" in text and "{" not in text
    for word in ("relevant", "substantial", "useful", "clear", "expert"):
        assert word in text


def test_only_declared_placeholders_are_substituted(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text('Answer in JSON like {"score": 1}. Q: {instruction} {unknown}')
    t = Template(path, ("instruction",))
    assert t.render(instruction="{response}") == 'Answer in JSON like {"score": 1}. Q: {response} {unknown}'


def test_missing_placeholder_names_file_and_key(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("Rate this: {response}")
    with pytest.raises(ConfigError, match=r"'judge.template'.*\{instruction\}"):
        Template(path, ("instruction", "response"), key="judge.template")


def test_chat_prompt_uses_the_tokenizer_template(tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert chat_prompt(tok, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        chat_prompt(tok, "Hi")


def test_tiny_tokenizer_is_trained_on_the_runs_own_templates():
    """Only the templates a run renders go into its tokenizer's text: a prompt file added for another
    recipe must not change the default run's tokenizer (and so its whole random trajectory)."""
    from selfreward.config import compose
    from selfreward.data import seed_texts
    from selfreward.resources import find_prompt

    judge, testbed_judge = (find_prompt(name).read_text() for name in ("judge.txt", "testbed_judge.txt"))
    default = seed_texts(compose([]))
    assert judge in default and testbed_judge not in default
    swapped = seed_texts(compose(["judge.template=testbed_judge.txt"]))
    assert testbed_judge in swapped and judge not in swapped


def test_plain_chat_template_starts_with_the_tokenizers_bos(tiny_checkpoint):
    """Transformers renders chat templates without special tokens: a base checkpoint (Llama 2's <s>)
    gets its BOS only from the template, once, in what the generator and the trainers tokenize."""
    from transformers import AutoTokenizer

    from selfreward.templates import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tok.chat_template = None
    ensure_chat_template(tok, "plain_chat.jinja")
    assert chat_prompt(tok, "Hi") == f"{tok.bos_token}### User:\nHi\n\n### Assistant:\n"
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    tok.bos_token = None  # a tokenizer without one gets none
    assert chat_prompt(tok, "Hi").startswith("### User:")
