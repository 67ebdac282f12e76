"""DPO update of round t with TRL's DPOTrainer: `round_<t>/pairs.jsonl` -> M_{t+1}.

The reference is M_t (`update.reference=previous`, the paper's choice) or M1 (`initial`). With LoRA
(`lora.enabled=true`) and reference M_t, the reference is the policy with its adapter disabled: TRL
does that when no `ref_model` is given, so no second copy of the weights is loaded.
`--stage <name>` trains a training stage a variant adds (a look-ahead model) on
`round_<t>/<name>/pairs.jsonl` into `round_<t>/<name>/model` the same way.

    accelerate launch --config_file launch/cpu_zero3.yaml -m selfreward.train.dpo --run-dir R --round 1
"""

from __future__ import annotations

import sys

from selfreward.checkpoint import load_tokenizer, peft_config
from selfreward.files import read_jsonl
from selfreward.rundir import RunDir
from selfreward.schema import Config, Reference
from selfreward.train.common import (
    load_model,
    train_and_save,
    training_main,
    trl_config,
)


def build_trainer(cfg: Config, rd: RunDir, t: int, stage: str):
    """(trainer, tokenizer, number of pairs, input paths, starting model) for round t's DPO."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    pairs_path = rd.training_input(cfg, t, stage)
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
    sft = cfg.update.sft_weight
    rpo = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft]} if sft else {}
    args = trl_config(DPOConfig, cfg, rd, t, stage, cfg.update.epochs, cfg.update.learning_rate,
                      beta=cfg.update.beta, precompute_ref_log_probs=cfg.update.precompute_ref, **rpo)
    tokenizer = load_tokenizer(policy, cfg)
    lora = peft_config(cfg.lora)
    trainer = DPOTrainer(
        model=load_model(policy, cfg),
        # TRL needs no reference copy when it can disable the adapter, or compute the reference's
        # log-probs with the policy itself before the first step (they are the same model then).
        ref_model=None if (lora or cfg.update.precompute_ref) and reference == policy else load_model(reference, cfg),
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=lora,
    )
    return trainer, tokenizer, len(examples), [pairs_path, policy, reference], policy


def train(cfg: Config, rd: RunDir, t: int, stage: str) -> None:
    trainer, tokenizer, records, inputs, policy = build_trainer(cfg, rd, t, stage)
    train_and_save(trainer, tokenizer, cfg, rd, t, stage, records, inputs, start_from=policy)


def main(argv: list[str] | None = None) -> int:
    return training_main(argv, __doc__, train)


if __name__ == "__main__":
    sys.exit(main())
