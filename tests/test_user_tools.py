"""What a user touches around a run: quiet output with everything in the run's logs, one output
discipline, commands that explain themselves, TRL settings, trackers, and the HTML report checked in a
real headless browser."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest

from selfreward.cli import parser
from tests.helpers import SMALL, need, selfreward, wandb_history

TRAINER_ARGS = "train.trainer_args={lr_scheduler_type: cosine, warmup_steps: 0.1}"


# -- commands that explain themselves ------------------------------------------------------------------

def test_every_subcommand_has_its_own_help(capsys):
    commands = parser()._subparsers._group_actions[0].choices
    helps = {}
    for name in commands:
        with pytest.raises(SystemExit):
            parser().parse_args([name, "--help"])
        helps[name] = capsys.readouterr().out
    assert len(set(helps.values())) == len(helps)  # no two alike
    for name, words in {"run": ["restart_from"], "config": ["--explain"], "status": ["run_dir"],
                        "sweep": ["sweep_dir", "choice"], "report": ["--html", "--out", "paths"],
                        "export": ["--questions", "--format"], "recipes": ["recipe="]}.items():
        assert all(w in helps[name] for w in words), (name, helps[name])
    assert "overrides" not in helps["status"]  # status takes a directory, not overrides


def test_recipes_and_explain(capsys):
    from selfreward.cli import main

    assert main(["recipes"]) == 0
    listed = capsys.readouterr().out
    assert "tiny " in listed and "testbed " in listed and "I-SHEEP" in listed
    assert main(["config", "--explain", "judge"]) == 0
    out = capsys.readouterr().out
    assert "judge.samples (int in [1, inf), default 3)\n    Sampled judgments per candidate" in out
    assert "judge.method (sampled | logprob | oracle, default 'sampled')" in out and "update." not in out
    assert main(["config", "--explain", "nope"]) == 2


# -- every TRL setting -----------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("train.trainer_args={lr_schedular_type: cosine}", "Did you mean 'lr_scheduler_type'?"),
    ("train.trainer_args={beta: 0.5}", "is set by selfreward: use update.beta"),
    ("train.trainer_args={learning_rate: 1e-3}", "use init.learning_rate or update.learning_rate"),
    ("train.trainer_args={lr_scheduler_type: bumpy}", "refuses it"),
])
def test_trainer_args_are_checked_before_any_work(tmp_path, override, message):
    result = selfreward("run", "recipe=tiny", override, f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# -- a quiet tiny run with a tracker, trainer settings and the HTML report --------------------------------

@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    """The shrunk default recipe (ZeRO-2 launches included), stdout and stderr redirected to files."""
    root = tmp_path_factory.mktemp("quiet")
    run_dir = root / "run"
    with open(root / "stdout", "w") as out, open(root / "stderr", "w") as err:
        code = subprocess.run([sys.executable, "-m", "selfreward", "run", "recipe=tiny", *SMALL, "rounds=2",
                               "train.report_to=[tensorboard]", TRAINER_ARGS, f"run_dir={run_dir}"],
                              stdout=out, stderr=err).returncode
    assert code == 0, (root / "stderr").read_text()[-3000:]
    return run_dir, (root / "stdout").read_text(), (root / "stderr").read_text()


@pytest.mark.slow
def test_a_redirected_run_prints_little_and_logs_everything(quiet_run):
    run_dir, out, err = quiet_run
    lines = out.splitlines() + err.splitlines()
    assert len(lines) <= 60, "\n".join(lines)
    assert not re.search(r"\r|\x1b\[", out + err)  # no progress redraws, no cursor escapes
    assert "FutureWarning" not in out + err and "Setting accelerator" not in out + err
    # the summary is complete: on stdout, every round, no cell cut short
    assert "selfreward: rounds" in out and "…" not in out
    assert re.findall(r"^[│|]\s*([12])\s+[│|]", out, re.M) == ["1", "2"] and "summary.md" in out
    summary = (run_dir / "summary.md").read_text().splitlines()
    assert len(summary) == 4 and summary[0].startswith("| round |")
    # what the console dropped is in the stage logs: the trainer's steps among it
    logs = {p.name for p in (run_dir / "logs").iterdir()}
    assert {"init.log", "round_1.generation.log", "round_1.update.log", "round_1.evaluate.log"} <= logs
    steps = [json.loads(line) for line in (run_dir / "init" / "train" / "log.jsonl").read_text().splitlines()]
    assert len([s for s in steps if "loss" in s]) >= 5
    assert "'loss'" in (run_dir / "logs" / "init.log").read_text()


@pytest.mark.slow
def test_trainer_args_reach_the_trainer(quiet_run):
    run_dir = quiet_run[0]
    for folder in ("init", "round_1", "round_2"):
        args = json.loads((run_dir / folder / "manifest.json").read_text())[
            "init" if folder == "init" else "update"]["trainer_args"]
        assert (args["lr_scheduler_type"], args["warmup_steps"]) == ("cosine", 0.1)


@pytest.mark.slow
def test_tensorboard_holds_the_trainer_losses_and_one_scalar_per_round(quiet_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = quiet_run[0]
    rounds = EventAccumulator(str(run_dir / "tensorboard" / "rounds")).Reload()
    for name in ("pairs", "judgment_parse_failure_rate", "mode_share", "length_chosen", "length_rejected",
                 "judge_pairwise_accuracy", "train_loss"):
        assert [e.step for e in rounds.Scalars(f"round/{name}")] == [1, 2], name
    # a win rate is logged in the rounds that have one: none when the evaluator decided no comparison
    by_round = {t: json.loads((run_dir / f"round_{t}" / "metrics.json").read_text())["eval"] for t in (1, 2)}
    for name in ("win_rate_vs_previous", "win_rate_vs_initial"):
        want = [t for t in (1, 2) if by_round[t][name] is not None]
        got = [e.step for e in rounds.Scalars(f"round/{name}")] if f"round/{name}" in rounds.Tags()["scalars"] else []
        assert got == want, name
    metrics = json.loads((run_dir / "round_2" / "metrics.json").read_text())
    assert rounds.Scalars("round/pairs")[-1].value == metrics["counts"]["pairs"]
    for stage in ("init", "round_1.update", "round_2.update"):
        trainer = EventAccumulator(str(run_dir / "tensorboard" / stage)).Reload()
        assert trainer.Scalars("train/loss"), stage


@pytest.mark.slow
def test_the_html_report_opens_in_a_browser_and_shows_the_rounds(quiet_run, tmp_path):
    chromium = need(shutil.which("chromium") or shutil.which("chromium-browser"),
                    "a headless chromium (.ci/run installs Debian's chromium)")
    run_dir = quiet_run[0]
    page = tmp_path / "report" / "report.html"
    assert selfreward("report", str(run_dir), "--html", "--out", str(page.parent)).stdout.strip() == str(page)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    pairs = [json.loads(line) for line in (run_dir / "round_1" / "pairs.jsonl").read_text().splitlines()]
    assert 'href="#round-1"' in dom.stdout and 'href="#round-2"' in dom.stdout
    assert f"Training data: {len(pairs)} pairs" in dom.stdout
    import html

    # what a person reads: the DOM's text (a serializer escapes quotes in text nodes or not)
    shown = html.unescape(re.sub(r"<[^>]+>", "", dom.stdout))
    assert pairs[0]["chosen"].split("\n")[0] in shown
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000


def test_status_takes_the_run_directory_both_ways(tmp_path):
    from selfreward.config import compose, to_yaml

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(to_yaml(compose([f"run_dir={run_dir}"])))
    for arg in (str(run_dir), f"run_dir={run_dir}"):
        assert "not started" in selfreward("status", arg).stdout


@pytest.mark.slow
def test_wandb_offline_holds_the_round_numbers_and_the_trainer_loss(tmp_path):
    need(importlib.util.find_spec("wandb"), "wandb (the dev extra installs it)")
    run_dir = tmp_path / "run"
    selfreward("run", "recipe=tiny", *SMALL, "rounds=1", "launch.accelerate_config=null", "launch.in_process=true",
               "eval.enabled=false", "train.report_to=[wandb]", f"run_dir={run_dir}",
               env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run"
    ids = {p.name.rsplit("-", 1)[1] for p in runs}
    assert len(ids) == 1  # every process of the run wrote into one W&B run
    logged = {}
    for p in runs:  # each process's part of the run, in order (a process that logged nothing has no file)
        for log in p.glob("run-*.wandb"):
            for row in wandb_history(log):
                logged.update(row)
    assert "train/loss" in logged and logged["round/round"] == 1 and "round/pairs" in logged


def test_a_tool_ci_installs_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import _pytest.outcomes

    monkeypatch.setenv("CI", "true")
    with pytest.raises(_pytest.outcomes.Failed, match="broken install step"):
        need(None, "chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(_pytest.outcomes.Skipped):
        need(None, "chromium")
    assert need("/usr/bin/chromium", "chromium") == "/usr/bin/chromium"


def test_config_refuses_what_run_refuses(tmp_path):
    bad = "train.trainer_args={no_such_field: 1}"
    for command in ("config", "run"):
        result = selfreward(command, "recipe=tiny", bad, f"run_dir={tmp_path / 'run'}", check=False)
        assert result.returncode == 2 and "'train.trainer_args.no_such_field'" in result.stderr, (command, result)
        assert not result.stdout.strip() and not (tmp_path / "run").exists()


def test_mlflow_writes_into_the_run_directory_unless_told_otherwise(tmp_path, monkeypatch):
    import contextlib
    import types

    from selfreward import trackers
    from selfreward.config import compose
    from selfreward.rundir import RunDir

    uris = []
    fake = types.SimpleNamespace(
        set_tracking_uri=uris.append,
        start_run=lambda **kw: contextlib.nullcontext(types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose(["train.report_to=[mlflow]", f"run_dir={tmp_path / 'run'}"])
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    env = trackers.environment(cfg, rd)
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path / "run" / "mlruns").resolve().as_uri() == uris[0]
    assert env["MLFLOW_RUN_ID"] == "r1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert trackers.environment(cfg, rd)["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"
