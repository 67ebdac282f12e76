"""SFT with TRL's SFTTrainer: the init stage (IFT + EFT -> M1, `--round 0`) and the score-filtered
SFT update of round t (`round_<t>/sft.jsonl` -> M_{t+1}).

    accelerate launch --config_file launch/cpu_zero2.yaml -m selfreward.train.sft --run-dir R --round 0
"""

from __future__ import annotations

import sys

from selfreward.checkpoint import load_tokenizer, peft_config
from selfreward.config import Config
from selfreward.data import load_seed, seed_path
from selfreward.judge import judge_template
from selfreward.rundir import read_jsonl
from selfreward.train.common import load_model, parse_args, train_and_save, trainer_kwargs


def _example(prompt: str, completion: str) -> dict:
    # Conversational prompt/completion: TRL renders it with the tokenizer's chat template (the same
    # rendering the generator uses) and computes the loss on the completion only.
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": completion}],
    }


def init_examples(cfg: Config) -> list[dict]:
    """IFT as is; EFT rendered through the same judge template the judge stage uses."""
    rows = [_example(r["instruction"], r["response"]) for r in load_seed(cfg.data.ift_path, "ift")]
    if cfg.init.use_eft:
        template = judge_template(cfg.judge)
        rows += [
            _example(template.render(instruction=r["instruction"], response=r["response"]), r["judgment"])
            for r in load_seed(cfg.data.eft_path, "eft")
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg, rd, t, stage = parse_args(__doc__, argv)
    if t == 0:
        start_from, epochs, lr = rd.base(cfg), cfg.init.epochs, cfg.init.learning_rate
        max_steps = cfg.init.max_steps
        examples = init_examples(cfg)
        inputs = [seed_path(cfg.data.ift_path, "ift"), seed_path(cfg.data.eft_path, "eft"), start_from]
    else:
        rows = read_jsonl(rd.output(t, "sft_data"))
        start_from, epochs, lr, max_steps = rd.policy(cfg, t), cfg.update.epochs, cfg.update.learning_rate, -1
        examples = [_example(r["prompt"], r["response"]) for r in rows]
        inputs = [rd.output(t, "sft_data"), start_from]
    out_dir = rd.trained_model(t, stage).with_name("train")
    args = SFTConfig(**trainer_kwargs(cfg, out_dir, epochs, lr, cfg.seed + t, max_steps))
    tokenizer = load_tokenizer(start_from, cfg)
    trainer = SFTTrainer(
        model=load_model(start_from, cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora),
    )
    train_and_save(trainer, tokenizer, cfg, rd, t, stage, len(examples), inputs, start_from=start_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
