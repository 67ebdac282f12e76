"""The orchestrator: initialization, then rounds of

    prompts -> candidates -> judgments -> pairs -> update -> evaluate

By default no model work happens in this process. Generation stages run in one worker subprocess per round
(`selfreward.stages`), training under `accelerate launch` (`selfreward.train.*`); both read the frozen
`<run_dir>/config.yaml` and hand their results over as files in the run directory. With
`launch.in_process=true` (the tiny recipe sets it) the generation and evaluation entry points run here
instead, and so does training when no launcher is configured: the libraries then load once per run
instead of once per stage. Every stage whose manifest entry exists is skipped, so rerunning the same
command resumes the run.

Variants (`variant=<name>`, see `selfreward.variants`) add generation stages after the judge, a
look-ahead training step, or other rules for building the pairs; the round keeps this shape.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

from rich.console import Console

from selfreward import evaluate, extensions, profiling, prompts, stages, testbed, trackers
from selfreward.config import load_frozen
from selfreward.data import seed_texts
from selfreward.errors import ConfigError
from selfreward.files import atomic_dir, atomic_write_text, read_jsonl, write_jsonl
from selfreward.lock import RunLock
from selfreward.metrics import round_metrics, summary_markdown, summary_table
from selfreward.preflight import check_init_lengths, checked
from selfreward.process import IN_PROCESS, Launch, Launcher, launched_env, quiet_environment, run_stage, verbose
from selfreward.resources import find_launch_config
from selfreward.resume import freeze, verify_finished
from selfreward.round import Runner, Stage, StageName, generation_stage_names, log_name, round_stages, row
from selfreward.rundir import RunDir
from selfreward.schema import Config, OnProblem, UpdateMethod
from selfreward.tiny import build_tiny_model
from selfreward.train import dpo, sft
from selfreward.validation import launch_zero_stage

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

def run(cfg: Config, restart_from: str | None = None) -> list[dict]:
    cfg, rd = checked(cfg)
    if rd.root.is_dir() and not os.access(rd.root, os.W_OK):  # nothing can write it: no lock needed
        return finished_read_only(cfg, rd)
    rd.root.mkdir(parents=True, exist_ok=True)
    import torch

    quiet_environment(cuda=torch.cuda.is_available())
    with RunLock(rd.root) as lock:
        if note := lock.acquire():
            console.print(note)
        return _run(cfg, rd, restart_from)


def _run(cfg: Config, rd: RunDir, restart_from: str | None) -> list[dict]:
    freeze(cfg, rd, restart_from)
    verify_finished(cfg, rd)
    os.environ.update(trackers.environment(cfg, rd))  # every stage reports into the run's one tracker run
    if cfg.testbed.enabled:  # after freeze: changed testbed settings are refused once init is done
        testbed.write(cfg, rd)
        check_init_lengths(cfg, rd)
    if cfg.model.name_or_path is None and not rd.base_model.is_dir():
        console.print(f"building the tiny model and tokenizer in {rd.base_model}")
        build_tiny_model(rd.base_model, seed_texts(cfg), cfg.model.tiny, seed=cfg.seed)
    if not cfg.init.skip and not rd.is_done(None, StageName.init):
        train(cfg, rd, 0, sft)
    if cfg.testbed.enabled and cfg.eval.enabled and not rd.is_done(None, StageName.evaluate):
        evaluate_model(cfg, rd, 0, "M1 evaluation (testbed ground truth)")

    all_metrics = []
    for t in range(1, cfg.rounds + 1):
        with profiling.timed("round"):  # for the benchmark's share of a round spent outside model calls
            all_metrics.append(run_round(cfg, rd, t))
    if all_metrics:
        atomic_write_text(rd.root / "summary.md", summary_markdown(all_metrics))
    show_results(rd, all_metrics)
    return all_metrics


def show_results(rd: RunDir, all_metrics: list[dict]) -> None:
    """The results on stdout (diagnostics go to stderr): the summary table, whose cells wrap rather
    than being cut, and where the run directory, summary.md and the stages' logs are."""
    out = Console(width=None if sys.stdout.isatty() else 160)
    if all_metrics:
        out.print(summary_table(all_metrics))
        out.print(f"summary: {rd.root.resolve() / 'summary.md'}")
    out.print(f"run directory: {rd.root.resolve()}" + (f" (stage logs in {rd.root.resolve() / 'logs'})"
                                                          if (rd.root / "logs").is_dir() else ""))


def finished_read_only(cfg: Config, rd: RunDir) -> list[dict]:
    """A read-only run directory can only be a finished run with unchanged settings: show its results."""
    if not rd.config.is_file() or load_frozen(rd.root) != cfg:  # read as this version reads it
        raise ConfigError(f"{rd.root} is read-only and its config.yaml differs from these settings (or is "
                          "missing): nothing can be written there. Copy it somewhere writable to change it.")
    verify_finished(cfg, rd)
    todo = [f"round {t} {s.name}" for t in range(1, cfg.rounds + 1) for s in round_stages(cfg, t)
            if not rd.is_done(t, s.name) and not (s.name is StageName.evaluate and not cfg.eval.enabled)]
    if todo:
        raise ConfigError(f"{rd.root} is read-only and {len(todo)} stages are not done ({todo[0]} first): "
                          "make it writable to resume the run.")
    all_metrics = [json.loads((rd.round_dir(t) / "metrics.json").read_text()) for t in range(1, cfg.rounds + 1)]
    show_results(rd, all_metrics)
    return all_metrics


def run_round(cfg: Config, rd: RunDir, t: int) -> dict:
    console.rule(f"round {t}: M{t} -> M{t + 1}")
    # 1-3. M_t writes prompts, samples N candidates per prompt, judges each (one worker process);
    #      a variant's stages run here too: a second judge, meta-judgments, M1's candidates, and
    #      a look-ahead model with its own candidates.
    generate_and_judge(cfg, rd, t)
    if written := rd.manifest(t).get(StageName.prompts):
        console.print(f"round {t}: prompts {prompts.describe(written)}")
    # 4. Preference pairs (DPO) or the score-filtered set (SFT), by the variant's rules.
    build_training_data(cfg, rd, t)
    # 5. Train M_{t+1} under accelerate launch (or keep M_t when the round gave too little data).
    update(cfg, rd, t)
    # 6. Evaluate: judge quality, win rates, drift (eval.json); counts and health (metrics.json).
    if cfg.eval.enabled and not rd.is_done(t, StageName.evaluate):
        evaluate_model(cfg, rd, t, f"round {t}: evaluate")
    metrics = collect_metrics(cfg, rd, t)
    if trackers.enabled(cfg):
        trackers.log_round(cfg, rd, t, metrics, read_jsonl(rd.training_data(cfg, t)))
    return metrics


def generate_and_judge(cfg: Config, rd: RunDir, t: int) -> None:
    """The round's stages before the pairs, in table order: consecutive generation stages share one
    worker process; a training stage a variant puts between them (a look-ahead model) is launched
    on its own."""
    batch: list[str] = []
    for stage in round_stages(cfg, t):
        if stage.name is StageName.pairs:
            break
        if stage.runner is Runner.train:
            generate(cfg, rd, t, batch)
            batch = []
            train_variant_stage(cfg, rd, t, stage)
        else:
            batch.append(stage.name)
    generate(cfg, rd, t, batch)


def watching(cfg: Config, rd: RunDir) -> Launch:
    """How this run watches its stages: each stage's output in <run_dir>/logs/ (unless verbose)."""
    return Launch(log_dir=None if verbose() else rd.root / "logs", stall_timeout=cfg.launch.stall_timeout or None,
                  watch=rd.root)


def launcher(cfg: Config, stage: Stage) -> Launcher:
    """How a stage starts, from its row and `launch.*`: a training stage under `launch.launcher` or
    accelerate launch when set, generation under torchrun with launch.generation_processes > 1, and
    otherwise in this process (launch.in_process=true) or in a worker process of its own."""
    lc = cfg.launch
    if stage.runner is Runner.train and lc.launcher:
        return Launcher(tuple(shlex.split(lc.launcher)), launched_env())
    if stage.runner is Runner.train and lc.accelerate_config is not None:
        config_file = str(find_launch_config(lc.accelerate_config))
        return Launcher((sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file),
                        launched_env())
    if stage.name in generation_stage_names() and lc.generation_processes > 1:
        torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={lc.generation_processes}")
        return Launcher(torchrun, launched_env())
    return IN_PROCESS if lc.in_process else Launcher()


def generate(cfg: Config, rd: RunDir, t: int, todo: list[StageName]) -> None:
    todo = [s for s in todo if not rd.is_done(t, s)]
    if todo:
        args = ["--run-dir", str(rd.root), "--round", str(t), *todo]
        run_stage(stages, args, f"round {t}: {', '.join(todo)}", log_name(t, "generation"), watching(cfg, rd),
                  launcher(cfg, row(todo[0])))


def train(cfg: Config, rd: RunDir, t: int, trainer: ModuleType, stage: str = StageName.update) -> None:
    """The init (t = 0: SFT -> M1), a round's update, or a training stage a variant adds."""
    data = cfg.init.data.upper().replace("+", " + ")
    kind = trainer.__name__.rsplit(".", 1)[1].upper()
    what = f"init: SFT on {data} -> M1" if not t else f"round {t}: {stage} ({kind})"
    if launch_zero_stage(cfg.launch.accelerate_config) is not None and not cfg.launch.launcher:
        extensions.prepare(lambda line: console.print(line))
    args = ["--run-dir", str(rd.root), "--round", str(t), "--stage", stage]
    run_stage(trainer, args, what, log_name(t, stage if t else StageName.init), watching(cfg, rd),
              launcher(cfg, row(stage)))


def evaluate_model(cfg: Config, rd: RunDir, t: int, what: str) -> None:
    """M_{t+1}'s evaluation (t = 0: M1's, on the testbed)."""
    run_stage(evaluate, ["--run-dir", str(rd.root), "--round", str(t)], what, log_name(t, StageName.evaluate),
              watching(cfg, rd), launcher(cfg, row(StageName.evaluate)))


def train_variant_stage(cfg: Config, rd: RunDir, t: int, stage: Stage) -> None:
    """A training stage a variant adds: its `run` writes the DPO pairs it trains on (draft pairs, for
    a look-ahead model), then DPO trains them."""
    if not rd.is_done(t, stage.name):
        stage.run(cfg, rd, t)
        train(cfg, rd, t, dpo, stage=stage.name)


def build_training_data(cfg: Config, rd: RunDir, t: int) -> None:
    # One manifest entry, the pairs stage, for either kind of training data; the file differs.
    is_dpo = cfg.update.method is UpdateMethod.dpo
    if rd.is_done(t, StageName.pairs):
        return
    start = time.perf_counter()
    # the variant's rule: selfreward.variants.base.Variant's best vs worst, or the variant's own
    build = cfg.variant.preference_pairs if is_dpo else cfg.variant.sft_examples
    records, drops = build(cfg, rd, t)
    too_few = len(records) < cfg.pairs.min_pairs
    if too_few:
        message = (
            f"Round {t}: {len(records)} {'pairs' if is_dpo else 'SFT examples'}, fewer than "
            f"pairs.min_pairs={cfg.pairs.min_pairs} ({drops})."
        )
        if cfg.pairs.on_too_few is OnProblem.stop:
            raise ConfigError(
                f"{message} More candidates (generation.num_candidates), more judgments (judge.samples) "
                "or a lower pairs.min_margin / pairs.sft_threshold give the round something to train on; "
                "pairs.on_too_few=skip keeps M_t for the next round instead."
            )
        console.print(f"[yellow]{message} Skipping the update (pairs.on_too_few=skip): M{t + 1} = M{t}.")
    write_jsonl(rd.training_data(cfg, t), records)
    inputs = [rd.output(t, s.name) for s in round_stages(cfg, t) if s.name in generation_stage_names()[1:]]
    rd.mark_done(t, StageName.pairs, inputs,
                 seconds=round(time.perf_counter() - start, 3), records=len(records), skip_update=too_few, **drops)


def update(cfg: Config, rd: RunDir, t: int) -> None:
    if rd.is_done(t, StageName.update):
        return
    if rd.manifest(t)[StageName.pairs].get("skip_update"):
        skip_update(cfg, rd, t)
    else:
        train(cfg, rd, t, dpo if cfg.update.method is UpdateMethod.dpo else sft)


def skip_update(cfg: Config, rd: RunDir, t: int) -> None:
    """M_{t+1} = M_t without copying weights: hard links where the filesystem allows."""
    src = Path(rd.policy(cfg, t))
    with atomic_dir(rd.model(t)) as tmp:
        for f in src.iterdir():
            if f.is_file():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)
    rd.mark_done(t, StageName.update, [src], skipped=True, records=0, seconds=0.0)


def collect_metrics(cfg: Config, rd: RunDir, t: int) -> dict:
    """Collect the round's metrics.json (eval.json's headline numbers included)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rd.policy(cfg, t), trust_remote_code=cfg.model.trust_remote_code)
    return round_metrics(cfg, rd, t, tokenizer)

