"""Experiment trackers (`train.report_to`: tensorboard, wandb, trackio, mlflow, or whatever TRL accepts).

The trainers report their steps through TRL's own integrations; this module makes every process of a
run report into one tracker run and adds the round's headline numbers, step = round:

- one run per run directory, named after it (`run_name`) and resumed on a rerun: W&B by a run id
  derived from the directory's path, MLflow by the run id it created first (kept in
  `<run_dir>/trackers.json`), TensorBoard by its folder, `<run_dir>/tensorboard/` (one sub-folder per
  training stage, and `rounds/` for the headline numbers);
- per round: pairs, parse failures, mode share, chosen and rejected length, judge accuracy, win rates
  and, on the testbed, the accuracies checked by the program (`headline`), plus a table of sample
  pairs where the tracker has tables (W&B, trackio).
"""

from __future__ import annotations

import hashlib
import json
import os

from selfreward.files import write_json
from selfreward.rundir import RunDir
from selfreward.schema import Config

# name -> where it is read from a round's metrics.json
HEADLINE = {
    "pairs": ("counts", "pairs"),
    "sft_examples": ("counts", "sft_examples"),
    "judgment_parse_failure_rate": ("judge", "judgment_parse_failure_rate"),
    "candidates_unscored": ("counts", "candidates_unscored"),
    "mode_share": ("judge", "mode_share"),
    "mean_score": ("judge", "mean_score"),
    "length_chosen": ("lengths_tokens", "chosen"),
    "length_rejected": ("lengths_tokens", "rejected"),
    "train_loss": ("training", "train_loss"),
    "judge_pairwise_accuracy": ("eval", "judge_pairwise_accuracy"),
    "win_rate_vs_previous": ("eval", "win_rate_vs_previous"),
    "win_rate_vs_initial": ("eval", "win_rate_vs_initial"),
    "testbed_accuracy": ("eval", "testbed_accuracy"),
    "testbed_sampled_accuracy": ("eval", "testbed_sampled_accuracy"),
    "testbed_majority_accuracy": ("eval", "testbed_majority_accuracy"),
    "testbed_judge_accuracy": ("eval", "testbed_judge_accuracy"),
    "testbed_accuracy_gain": ("eval", "testbed_accuracy_gain"),
    "testbed_pair_precision": ("eval", "testbed_pair_precision"),
}
SAMPLE_ROWS = 20


def enabled(cfg: Config) -> list[str]:
    return [r for r in cfg.train.report_to if r != "none"]


def headline(metrics: dict) -> dict[str, float]:
    out = {}
    for name, (part, key) in HEADLINE.items():
        value = metrics.get(part, {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def run_name(rd: RunDir) -> str:
    return rd.root.resolve().name


def _state(rd: RunDir) -> dict:
    path = rd.root / "trackers.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def environment(cfg: Config, rd: RunDir) -> dict[str, str]:
    """What every stage process of the run needs to report into the run's one tracker run."""
    trackers = enabled(cfg)
    env: dict[str, str] = {}
    if "wandb" in trackers:
        run_id = hashlib.sha1(str(rd.root.resolve()).encode()).hexdigest()[:16]
        env.update(WANDB_RUN_ID=run_id, WANDB_RESUME="allow", WANDB_NAME=run_name(rd), WANDB_DIR=str(rd.root))
        env.setdefault("WANDB_PROJECT", os.environ.get("WANDB_PROJECT", "selfreward"))
    if "mlflow" in trackers:
        # MLflow's default store is ./mlruns of whatever folder the run started in: keep it in the run
        # directory, unless the user points MLflow elsewhere
        env["MLFLOW_TRACKING_URI"] = os.environ.get("MLFLOW_TRACKING_URI") or (rd.root / "mlruns").resolve().as_uri()
        state = _state(rd)
        if "mlflow_run_id" not in state:
            import mlflow

            mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
            with mlflow.start_run(run_name=run_name(rd)) as run:
                state["mlflow_run_id"] = run.info.run_id
            write_json(rd.root / "trackers.json", state)
        env["MLFLOW_RUN_ID"] = state["mlflow_run_id"]
    return env


def logging_dir(rd: RunDir, stage: str) -> str:
    """The trainers' TensorBoard folder: one per training stage, beside the rounds' numbers."""
    return str(rd.root / "tensorboard" / stage)


def log_round(cfg: Config, rd: RunDir, t: int, metrics: dict, pairs: list[dict]) -> None:
    """Round t's headline numbers (step = round) and a table of sample pairs, to every tracker."""
    numbers, trackers = headline(metrics), enabled(cfg)
    sample = [[p["prompt"], p.get("chosen", p.get("response")), p.get("rejected", ""),
               p.get("score_chosen", p.get("score")), p.get("score_rejected")] for p in pairs[:SAMPLE_ROWS]]
    columns = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    if "tensorboard" in trackers:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(rd.root / "tensorboard" / "rounds")) as writer:
            for name, value in numbers.items():
                writer.add_scalar(f"round/{name}", value, global_step=t)
    for module in ("wandb", "trackio"):
        if module in trackers:
            tracker = __import__(module)
            env = environment(cfg, rd)
            run = tracker.init(project=env.get("WANDB_PROJECT", "selfreward"), name=run_name(rd),
                               **({"id": env["WANDB_RUN_ID"], "resume": "allow", "dir": str(rd.root)}
                                  if module == "wandb" else {"resume": "allow"}))
            if module == "wandb":
                run.define_metric("round/*", step_metric="round/round")
            tracker.log({"round/round": t, **{f"round/{k}": v for k, v in numbers.items()},
                         f"round/pairs_sample_{t}": tracker.Table(columns=columns, data=sample)})
            tracker.finish()
    if "mlflow" in trackers:
        import mlflow

        env = environment(cfg, rd)
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        with mlflow.start_run(run_id=env["MLFLOW_RUN_ID"]):
            mlflow.log_metrics({f"round/{k}": v for k, v in numbers.items()}, step=t)

