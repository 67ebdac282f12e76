"""DPO update of round t with TRL's DPOTrainer: `round_<t>/pairs.jsonl` -> M_{t+1}.

The reference is M_t (`update.reference=previous`, the paper's choice) or M1 (`initial`).
`--stage lookahead` trains the temporal variant's look-ahead model on `round_<t>/lookahead/pairs.jsonl`
into `round_<t>/lookahead/model` the same way.

    accelerate launch --config_file launch/cpu_zero3.yaml -m selfreward.train.dpo --run-dir R --round 1
"""

from __future__ import annotations

import sys

from selfreward.config import Reference
from selfreward.rundir import read_jsonl
from selfreward.train.common import (
    load_model,
    load_tokenizer,
    output_model,
    parse_args,
    train_and_save,
    trainer_kwargs,
)


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    cfg, rd, t, stage = parse_args(__doc__, argv)
    pairs_path = rd.lookahead_dir(t) / "pairs.jsonl" if stage == "lookahead" else rd.output(t, "pairs")
    pairs = read_jsonl(pairs_path)
    # Conversational format: TRL renders prompt and responses with the tokenizer's chat template.
    examples = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]
    policy = rd.policy(cfg, t)
    reference = policy if cfg.update.reference is Reference.previous else rd.initial(cfg)
    # The TRL config must exist before any model loads (ZeRO-3 partitions weights while loading).
    out_dir = output_model(rd, t, stage).with_name("train")
    args = DPOConfig(
        beta=cfg.update.beta,
        **trainer_kwargs(cfg, out_dir, cfg.update.epochs, cfg.update.learning_rate, cfg.seed + t),
    )
    tokenizer = load_tokenizer(policy, cfg)
    trainer = DPOTrainer(
        model=load_model(policy, cfg),
        ref_model=load_model(reference, cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
    )
    train_and_save(trainer, tokenizer, rd, t, stage, records=len(examples), inputs=[pairs_path, policy, reference])
    return 0


if __name__ == "__main__":
    sys.exit(main())
