"""The orchestrator: initialization, then rounds of

    prompts -> candidates -> judgments -> pairs -> update -> evaluate

Model work never happens in this process. Generation stages run in one worker subprocess per round
(`selfreward.stages`), training under `accelerate launch` (`selfreward.train.*`); both read the frozen
`<run_dir>/config.yaml` and hand their results over as files in the run directory. Every stage whose
manifest entry exists is skipped, so rerunning the same command resumes the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml
from rich.console import Console

from selfreward.config import Config, ConfigError, UpdateMethod, to_yaml
from selfreward.data import seed_texts
from selfreward.metrics import round_metrics, summary_table
from selfreward.pairs import build_pairs, build_sft
from selfreward.resources import find_launch_config
from selfreward.rundir import RunDir, atomic_write_text, read_jsonl, write_jsonl

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

# Keys that may differ when a run is resumed: they do not alter any finished stage (a moved
# run directory is still the same run).
RESUMABLE_CHANGES = {"rounds", "run_dir"}


class StageFailed(RuntimeError):
    def __init__(self, what: str, returncode: int):
        super().__init__(f"{what} failed with exit code {returncode} (its output is above). "
                         "Rerun the same command to resume from the last finished stage.")
        self.returncode = returncode


def run(cfg: Config) -> list[dict]:
    rd = RunDir(cfg.run_dir)
    freeze(cfg, rd)
    if cfg.model.name_or_path is None and not rd.base_model.is_dir():
        from selfreward.tiny import build_tiny_model

        console.log(f"building the tiny model and tokenizer in {rd.base_model}")
        build_tiny_model(rd.base_model, seed_texts(cfg), cfg.model.tiny, seed=cfg.seed)
    if not cfg.init.skip and not rd.is_done(None, "init"):
        console.rule("init: SFT on IFT + EFT -> M1")
        train(cfg, rd, 0, "selfreward.train.sft")

    all_metrics = []
    for t in range(1, cfg.rounds + 1):
        console.rule(f"round {t}: M{t} -> M{t + 1}")
        # 1-3. M_t writes prompts, samples N candidates per prompt, judges each (one worker process).
        generate(cfg, rd, t, ["prompts", "candidates", "judge"])
        # 4. Preference pairs (DPO) or the score-filtered set (SFT).
        build_training_data(cfg, rd, t)
        # 5. Train M_{t+1} under accelerate launch.
        module = "selfreward.train.dpo" if cfg.update.method is UpdateMethod.dpo else "selfreward.train.sft"
        if not rd.is_done(t, "update"):
            train(cfg, rd, t, module)
        # 6. Evaluate: counts, judge health, lengths, training metrics.
        all_metrics.append(evaluate(cfg, rd, t))
    if all_metrics:
        console.print(summary_table(all_metrics))
    console.print(f"run directory: {rd.root.resolve()}")
    return all_metrics


def freeze(cfg: Config, rd: RunDir) -> None:
    """Write the resolved config once; a rerun must match it except for RESUMABLE_CHANGES."""
    text = to_yaml(cfg)
    if rd.config.is_file():
        old, new = _flatten(yaml.safe_load(rd.config.read_text())), _flatten(yaml.safe_load(text))
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            diff = "\n".join(f"  {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise ConfigError(
                f"{rd.config} exists with different settings:\n{diff}\n"
                "Use a new run_dir, or repeat the original settings to resume."
            )
    rd.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config, text)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _subprocess(cmd: list[str], what: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(cmd, env=env)
    if result.returncode:
        raise StageFailed(what, result.returncode)


def generate(cfg: Config, rd: RunDir, t: int, stages: list[str]) -> None:
    todo = [s for s in stages if not rd.is_done(t, s)]
    if todo:
        cmd = [sys.executable, "-m", "selfreward.stages", "--run-dir", str(rd.root), "--round", str(t), *todo]
        _subprocess(cmd, f"round {t} generation ({', '.join(todo)})")


def train(cfg: Config, rd: RunDir, t: int, module: str) -> None:
    args = ["-m", module, "--run-dir", str(rd.root), "--round", str(t)]
    if cfg.launch.accelerate_config is None:
        cmd = [sys.executable, *args]
    else:
        config_file = find_launch_config(cfg.launch.accelerate_config)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), *args]
    _subprocess(cmd, f"training ({module}, round {t})")


def build_training_data(cfg: Config, rd: RunDir, t: int) -> None:
    stage = "pairs" if cfg.update.method is UpdateMethod.dpo else "sft_data"
    if rd.is_done(t, stage):
        return
    start = time.perf_counter()
    candidates = read_jsonl(rd.output(t, "candidates"))
    judgments = read_jsonl(rd.output(t, "judge"))
    if stage == "pairs":
        records, drops = build_pairs(candidates, judgments, cfg.pairs.min_margin)
    else:
        records, drops = build_sft(candidates, judgments, cfg.pairs.sft_threshold), {}
    if not records:
        raise ConfigError(
            f"Round {t} produced no {stage.replace('_', ' ')} from {len(candidates)} candidates "
            f"(drops: {drops or 'all below pairs.sft_threshold'}); see {rd.output(t, 'judge')}. "
            "More candidates (generation.num_candidates), more judgments (judge.samples) or a lower "
            "pairs.min_margin / pairs.sft_threshold give the round something to train on."
        )
    write_jsonl(rd.output(t, stage), records)
    rd.mark_done(t, stage, seconds=round(time.perf_counter() - start, 3), records=len(records), **drops)


def evaluate(cfg: Config, rd: RunDir, t: int) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rd.policy(cfg, t), trust_remote_code=cfg.model.trust_remote_code)
    return round_metrics(cfg, rd, t, tokenizer)

