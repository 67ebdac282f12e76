"""Integration: the real CLI, real TRL trainers, real `accelerate launch` with DeepSpeed on 2 CPU ranks."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file

from selfreward import profiling
from tests.helpers import SMALL, selfreward

pytestmark = pytest.mark.slow

ROUND_FIELDS = {
    "prompts.jsonl": {"id", "prompt"},
    "candidates.jsonl": {"prompt_id", "prompt", "candidate_id", "response"},
    "judgments.jsonl": {"prompt_id", "candidate_id", "score", "scores", "judgments"},
    "pairs.jsonl": {"prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"},
    "sft.jsonl": {"prompt_id", "prompt", "response", "score"},
}


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def weights_changed(before, after) -> bool:
    a, b = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert a.keys() == b.keys()
    return any(not torch.equal(a[k], b[k]) for k in a)


def check_round(run_dir, t, data_file):
    rd = run_dir / f"round_{t}"
    for name in ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl", data_file):
        rows = records(rd / name)
        assert rows, name
        assert all(ROUND_FIELDS[name] <= set(r) for r in rows), name
    # readable by `datasets`, as the run-directory contract promises
    from datasets import load_dataset

    assert len(load_dataset("json", data_files=str(rd / data_file), split="train")) == len(records(rd / data_file))
    assert (rd / "model" / "config.json").is_file() and (rd / "model" / "tokenizer_config.json").is_file()
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["counts"]["candidates"] == len(records(rd / "candidates.jsonl"))
    assert {"judgment_parse_failure_rate", "score_histogram", "mode_share"} <= set(metrics["judge"])
    assert metrics["training"]["train_loss"] is not None and "update" in metrics["seconds"]
    ev = json.loads((rd / "eval.json").read_text())
    assert {"pairwise_accuracy", "exact_match", "spearman", "kendall_tau", "unscored_rate"} <= set(ev["judge"])
    assert ev["policy"]["vs_previous"]["n"] == 16 and ev["policy"]["vs_initial"]["n"] == 16
    assert {"response_length_mean", "distinct_2_responses", "distinct_2_prompts", "prompt_repeat_share"} <= set(
        ev["drift"]
    )
    assert {"judge_pairwise_accuracy", "win_rate_vs_previous", "win_rate_vs_initial"} <= set(metrics["eval"])
    previous = run_dir / ("init" if t == 1 else f"round_{t - 1}") / "model"
    assert weights_changed(previous, rd / "model")
    return metrics


def manifest(run_dir, t):
    return json.loads((run_dir / f"round_{t}" / "manifest.json").read_text())


def test_dpo_round_zero2_then_resume(run_from_init):
    run_dir = run_from_init()
    args = [
        "run",
        "recipe=tiny",
        *SMALL,
        "rounds=1",
        "update=dpo",
        "judge=logprob",
        "launch.accelerate_config=cpu_zero2",
        f"run_dir={run_dir}",
    ]
    selfreward(*args)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "init" / "model").is_dir()
    metrics = check_round(run_dir, 1, "pairs.jsonl")
    assert metrics["counts"]["pairs"] > 0 and "rewards/accuracies" in metrics["training"]
    update = manifest(run_dir, 1)["update"]
    assert update["world_size"] == 2 and update["deepspeed_zero_stage"] == 2 and update["precision"] == "fp32"
    pairs = records(run_dir / "round_1" / "pairs.jsonl")
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)

    # Rerunning the same command finds every stage done and does no work.
    before = manifest(run_dir, 1)
    start = time.perf_counter()
    selfreward(*args)
    assert manifest(run_dir, 1) == before
    assert time.perf_counter() - start < 60

    # Changing a setting that shaped finished stages is refused with the diff.
    changed = selfreward(*args[:-1], "update.beta=0.5", f"run_dir={run_dir}", check=False)
    assert changed.returncode == 2 and "update.beta: 0.1 -> 0.5" in changed.stderr


def test_dpo_round_zero3_reference_initial(run_from_init):
    run_dir = run_from_init()
    selfreward(
        "run",
        "recipe=tiny",
        *SMALL,
        "rounds=1",
        "update=dpo",
        "judge=logprob",
        "update.reference=initial",
        "launch.accelerate_config=cpu_zero3",
        f"run_dir={run_dir}",
    )
    check_round(run_dir, 1, "pairs.jsonl")
    update = manifest(run_dir, 1)["update"]
    assert update["world_size"] == 2 and update["deepspeed_zero_stage"] == 3


@pytest.mark.parametrize("zero", ["cpu_zero2", "cpu_zero3"])
def test_bf16_mixed_under_zero_saves_the_fp32_master_weights(run_from_init, zero):
    """DeepSpeed's bf16 mode holds the module in bf16: the saved model must be the optimizer's fp32
    master copy, or every update smaller than bf16's resolution is rounded away on save. A finished
    stage's checkpoints are deleted unless train.keep_checkpoints=true (tried under ZeRO-3)."""
    run_dir, keep = run_from_init(), zero == "cpu_zero3"
    selfreward("run", "recipe=tiny", *SMALL, "rounds=1", "judge=logprob", "eval.enabled=false",
               "train.precision=bf16_mixed", "train.save_steps=1", f"train.keep_checkpoints={str(keep).lower()}",
               f"launch.accelerate_config={zero}", f"run_dir={run_dir}")
    assert bool(list((run_dir / "round_1" / "train").glob("checkpoint-*"))) == keep
    before = load_file(run_dir / "init" / "model" / "model.safetensors")
    after = load_file(run_dir / "round_1" / "model" / "model.safetensors")
    assert before.keys() == after.keys() and {t.dtype for t in after.values()} == {torch.float32}
    changed = torch.cat([(after[k] != before[k]).flatten() for k in after])
    off_bf16 = torch.cat([(after[k] != after[k].bfloat16().float()).flatten() for k in after])
    assert changed.float().mean() > 0.5 and off_bf16.float().mean() > 0.5  # fp32 values, not a bf16 upcast
    # and the master copy started from M1's fp32 weights, not from M1 rounded to bf16: an Adam step moves
    # a weight by about the learning rate, far less than bf16 rounding moves a weight of this model
    update = json.loads((run_dir / "round_1" / "manifest.json").read_text())["update"]
    bound = 2 * update["steps"] * update["trainer_args"]["learning_rate"]
    moved = max((after[k] - before[k]).abs().max().item() for k in after)
    rounding = max((before[k] - before[k].bfloat16().float()).abs().max().item() for k in before)
    assert 0 < moved <= bound < rounding, (moved, bound, rounding)
    assert json.loads((run_dir / "round_1" / "model" / "config.json").read_text())["dtype"] == "float32"
    # checkpoints that are to be deleted are not written at the last step (the model is saved next)
    hashes = run_dir / "round_1" / "train" / "checkpoint_hashes.json"
    saved = json.loads(hashes.read_text()) if hashes.is_file() else {}
    assert (f"checkpoint-{update['steps']}" in saved) == keep, (update["steps"], sorted(saved))


def test_default_recipe_end_to_end(tmp_path):
    """The README's main command, unchanged but for run_dir: init + 2 rounds of sampled-judge DPO."""
    run_dir = tmp_path / "tiny"
    selfreward("run", f"run_dir={run_dir}")
    assert (run_dir / "init" / "manifest.json").is_file()
    for t in (1, 2):
        metrics = check_round(run_dir, t, "pairs.jsonl")
        assert metrics["counts"]["judgments"] == 2 * metrics["counts"]["candidates"]  # judge.samples=2


def test_in_process_run_writes_what_fresh_processes_write(run_from_init):
    """launch.in_process=true runs the same stage entry points inside the orchestrator: two rounds of
    LoRA DPO with evaluation write the same files and weights as one fresh process per stage."""
    args = ["recipe=tiny", *SMALL, "rounds=2", "judge=logprob", "lora.enabled=true", "launch.accelerate_config=null"]
    runs = {mode: run_from_init(f"in_process_{mode}") for mode in ("false", "true")}
    pids = {}
    for mode, run_dir in runs.items():
        profile = run_dir / "profile.jsonl"  # every model call and round, with the pid that made it
        selfreward("run", *args, f"launch.in_process={mode}", f"run_dir={run_dir}", env={profiling.ENV: str(profile)})
        pids[mode] = {call["pid"] for call in profiling.read(profile)}
    assert len(pids["true"]) == 1 and len(pids["false"]) == 7  # orchestrator + 3 stage processes a round
    fresh, in_process = runs["false"], runs["true"]
    for t in (1, 2):
        for name in ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "pairs.jsonl"):
            assert (in_process / f"round_{t}" / name).read_text() == (fresh / f"round_{t}" / name).read_text(), name
        a, b = (load_file(r / f"round_{t}" / "model" / "model.safetensors") for r in (fresh, in_process))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"round {t} weights differ"
        evals = [(r / f"round_{t}" / "eval.json").read_text().replace(str(r), "<run_dir>") for r in (fresh, in_process)]
        assert evals[0] == evals[1]
    assert weights_changed(in_process / "round_1" / "model", in_process / "round_2" / "model")
