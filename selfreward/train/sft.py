"""SFT with TRL's SFTTrainer: the init stage (IFT + EFT -> M1, `--round 0`) and the score-filtered
SFT update of round t (`round_<t>/sft.jsonl` -> M_{t+1}).

    accelerate launch --config_file launch/cpu_zero2.yaml -m selfreward.train.sft --run-dir R --round 0
"""

from __future__ import annotations

import sys

from selfreward.checkpoint import load_tokenizer, peft_config
from selfreward.data import seed_lines, seed_path
from selfreward.errors import ConfigError
from selfreward.files import read_jsonl
from selfreward.judge import judge_template
from selfreward.rundir import RunDir
from selfreward.schema import Config
from selfreward.text import token_counts
from selfreward.train.common import load_model, train_and_save, training_main, trl_config


def _example(prompt: str, completion: str) -> dict:
    # Conversational prompt/completion: TRL renders it with the tokenizer's chat template (the same
    # rendering the generator uses) and computes the loss on the completion only.
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": completion}],
    }


def init_examples(cfg: Config) -> tuple[list[dict], list[str]]:
    """(examples, "file:line" of each): IFT as is; EFT rendered through the same judge template the
    judge stage uses. `init.data` says which of the two the init trains on."""
    rows, where = [], []
    if "ift" in cfg.init.data:
        for source, r in seed_lines(cfg.data.ift_path, "ift", cfg.data.columns):
            rows.append(_example(r["instruction"], r["response"]))
            where.append(source)
    if "eft" in cfg.init.data:
        template = judge_template(cfg.judge)
        for source, r in seed_lines(cfg.data.eft_path, "eft", cfg.data.columns):
            rows.append(_example(template.render(instruction=r["instruction"], response=r["response"]), r["judgment"]))
            where.append(source)
    return rows, where


def check_init_lengths(cfg: Config, tokenizer, context: int | None) -> None:
    """Refuse an init example longer than training keeps. TRL cuts a long example's end, which for an
    EFT example is the "Score:" line the judge is there to learn; the refusal names file and line."""
    limit, name = cfg.train.max_length, "train.max_length"
    if context is not None and context < limit:
        limit, name = context, "the model's context (max_position_embeddings)"
    examples, where = init_examples(cfg)
    texts = [tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=False) for e in examples]
    for n, source in zip(token_counts(tokenizer, texts), where):
        if n > limit:
            raise ConfigError(
                f"{source}: this example is {n} tokens in the chat template, more than {name} ({limit}); "
                "training would cut off its end (an EFT judgment's 'Score:' line). Shorten or remove it"
                + (", or raise train.max_length." if name == "train.max_length" else ".")
            )


def build_trainer(cfg: Config, rd: RunDir, t: int, stage: str):
    """(trainer, tokenizer, number of examples, input paths, starting model) for the init (t = 0) or
    round t's score-filtered SFT."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if t == 0:
        start_from, epochs, lr = rd.base(cfg), cfg.init.epochs, cfg.init.learning_rate
        max_steps = cfg.init.max_steps
        examples, _ = init_examples(cfg)
        inputs = [seed_path(cfg.data.ift_path, "ift"), seed_path(cfg.data.eft_path, "eft"), start_from]
    else:
        rows = read_jsonl(rd.training_data(cfg, t))
        start_from, epochs, lr, max_steps = rd.policy(cfg, t), cfg.update.epochs, cfg.update.learning_rate, -1
        examples = [_example(r["prompt"], r["response"]) for r in rows]
        inputs = [rd.training_data(cfg, t), start_from]
    args = trl_config(SFTConfig, cfg, rd, t, stage, epochs, lr, max_steps)
    tokenizer = load_tokenizer(start_from, cfg)
    trainer = SFTTrainer(
        model=load_model(start_from, cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora, stage),
    )
    return trainer, tokenizer, len(examples), inputs, start_from


def train(cfg: Config, rd: RunDir, t: int, stage: str) -> None:
    trainer, tokenizer, records, inputs, start_from = build_trainer(cfg, rd, t, stage)
    train_and_save(trainer, tokenizer, cfg, rd, t, stage, records, inputs, start_from=start_from)


def main(argv: list[str] | None = None) -> int:
    return training_main(argv, __doc__, train)


if __name__ == "__main__":
    sys.exit(main())
