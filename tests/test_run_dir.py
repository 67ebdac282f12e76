"""A run directory nobody can break: one writer, only run directories written, verified inputs,
recovery advice that works when followed, no silent hang, read-only runs still readable."""

import dataclasses
import json
import os
import subprocess
import sys
import time
import types

import pytest

from selfreward.errors import ConfigError
from selfreward.lock import NAME, RunLock
from selfreward.process import Launch, Launcher, StageFailed, run_stage
from tests.helpers import SMALL, selfreward

FAST = ["recipe=tiny", *SMALL, "launch.accelerate_config=null", "launch.in_process=true", "eval.enabled=false"]


def fails(*args, match: str) -> str:
    result = selfreward(*args, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and match in result.stderr, result.stderr[-3000:]
    return result.stderr


# -- one writer ---------------------------------------------------------------------------------------

@pytest.fixture
def live_holder():
    """A live process that looks like a selfreward run (its command line says so)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "selfreward", "run"])
    yield proc
    proc.kill()
    proc.wait()


def hold(run_dir, pid):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": pid, "started": "then",
                                            "command": "selfreward run"}))


def test_a_second_run_on_a_held_directory_exits_2_naming_the_holder(tmp_path, live_holder):
    run_dir = tmp_path / "run"
    hold(run_dir, live_holder.pid)
    stderr = fails("run", *FAST, "rounds=0", f"run_dir={run_dir}", match="is in use by another selfreward run")
    assert f"pid {live_holder.pid}" in stderr
    assert sorted(p.name for p in run_dir.iterdir()) == [NAME]  # nothing written


def test_a_lock_whose_holder_is_gone_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunLock(tmp_path)
    hold(tmp_path, dead.pid)
    assert "is gone" in lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / NAME).exists()
    # from another host, only a heartbeat older than STALE_AFTER proves the holder gone
    (tmp_path / NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(ConfigError, match="pid 1 on elsewhere"):
        RunLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / NAME, (old, old))
    lock = RunLock(tmp_path)
    assert "no heartbeat from elsewhere" in lock.acquire()
    lock.release()


@pytest.mark.slow
def test_two_runs_started_together_on_a_fresh_directory(tmp_path):
    """The first takes the lock, the second exits 2 at once with nothing written; the directory stays
    whole, so the first finishes and a rerun of the second only reports."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "selfreward", "run", *FAST, "rounds=0", f"run_dir={run_dir}"]
    first, second = (subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    results = sorted(((p.wait(), p.stderr.read()) for p in (first, second)), key=lambda r: r[0])
    assert [code for code, _ in results] == [0, 2]
    assert "is in use by another selfreward run" in results[1][1]
    assert (run_dir / "base_model" / "tokenizer_config.json").is_file()
    assert selfreward("run", *FAST, "rounds=0", f"run_dir={run_dir}").returncode == 0


# -- only run directories are written -------------------------------------------------------------------

def test_a_folder_of_other_files_is_never_written(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own settings\n")
    (folder / "notes.txt").write_text("keep me")
    fails("run", *FAST, f"run_dir={folder}", match="is not a selfreward run directory")
    assert (folder / "config.yaml").read_text() == "my: own settings\n"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes.txt"]


# -- verified inputs and advice that works ---------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-round DPO run (shared: each test copies it)."""
    from tests.helpers import selfreward as cli

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    cli("run", *FAST, "rounds=1", f"run_dir={run_dir}")
    return run_dir


def copy(finished, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(finished, target)
    config = target / "config.yaml"
    config.write_text(config.read_text().replace(str(finished), str(target)))
    return target


@pytest.mark.slow
def test_an_edited_or_truncated_output_is_refused_with_the_restart_that_redoes_it(finished, tmp_path):
    run_dir = copy(finished, tmp_path)
    pairs = run_dir / "round_1" / "pairs.jsonl"
    lines = pairs.read_text().splitlines(keepends=True)
    pairs.write_text("".join(lines[1:]))
    stderr = fails("run", *FAST, "rounds=1", f"run_dir={run_dir}", match=f"{pairs}: ")
    assert "records" in stderr and "restart_from=pairs" in stderr
    pairs.write_text("".join(lines)[:-7])  # torn in its last line
    stderr = fails("run", *FAST, "rounds=1", f"run_dir={run_dir}", match="restart_from=pairs")
    status = selfreward("status", str(run_dir)).stdout
    assert "damaged" in status
    selfreward("run", *FAST, "rounds=1", f"run_dir={run_dir}", "restart_from=pairs")  # the advice works
    assert "damaged" not in selfreward("status", str(run_dir)).stdout


@pytest.mark.slow
def test_a_deleted_model_shows_as_missing_and_its_advice_works(finished, tmp_path):
    import shutil

    run_dir = copy(finished, tmp_path)
    shutil.rmtree(run_dir / "round_1" / "model")
    assert "missing" in selfreward("status", str(run_dir)).stdout
    fails("run", *FAST, "rounds=1", f"run_dir={run_dir}", match="restart_from=update")
    selfreward("run", *FAST, "rounds=1", f"run_dir={run_dir}", "restart_from=update")
    assert (run_dir / "round_1" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_advice_after_a_changed_setting_works_for_sft(finished, tmp_path):
    """Switching a finished DPO round to SFT redoes it from the pairs step (which writes sft.jsonl);
    a changed SFT setting then redoes the update, and both hints work when followed."""
    run_dir = copy(finished, tmp_path)
    stderr = fails("run", *FAST, "rounds=1", "update=sft", f"run_dir={run_dir}", match="restart_from=pairs")
    assert "update.method: 'dpo' -> 'sft'" in stderr
    selfreward("run", *FAST, "rounds=1", "update=sft", f"run_dir={run_dir}", "restart_from=pairs")
    assert (run_dir / "round_1" / "sft.jsonl").is_file()
    fails("run", *FAST, "rounds=1", "update=sft", "update.learning_rate=2e-6", f"run_dir={run_dir}",
          match="restart_from=update")
    selfreward("run", *FAST, "rounds=1", "update=sft", "update.learning_rate=2e-6", f"run_dir={run_dir}",
               "restart_from=update")


# A changed setting for each stage of the table (and the init), on a run whose stages all finished.
CHANGES = {"init": "seed=3", "prompts": "prompts.num_prompts=7", "candidates": "generation.num_candidates=5",
           "judge": "judge.samples=5", "second_judge": "variant.second_template=testbed_judge.txt",
           "meta_judge": "variant.meta_template=judge.txt", "anchor_candidates": "variant.anchored_rejection=false",
           "lookahead": "variant.future_chosen=false", "pairs": "pairs.min_margin=0.5",
           "update": "update.learning_rate=3e-6", "evaluate": "eval.max_new_tokens=7"}


@pytest.mark.parametrize("update, variant", [("dpo", "temporal"), ("sft", "consistency"), ("dpo", "meta")])
def test_every_refusal_names_a_restart_that_redoes_the_changed_stage(tmp_path, update, variant):
    """The refusal's restart_from names the changed stage (or an earlier one); following it moves that
    stage's outputs, every later stage's and every later round's aside, and keeps the earlier ones."""
    from selfreward.config import compose
    from selfreward.files import write_json
    from selfreward.resume import freeze, parse_restart, stages
    from selfreward.round import setting_stages, table
    from selfreward.rundir import RunDir
    from selfreward.variants import REGISTRY

    assert {s.name for s in table() if s.settings} | {"init"} <= set(CHANGES)
    settings = {f"variant.{f.name}" for f in dataclasses.fields(REGISTRY[variant])}
    for stage, change in CHANGES.items():
        assert setting_stages().get(change.split("=")[0].split(".")[0], stage) is not None
        if change.startswith("variant.") and change.split("=")[0] not in settings:
            continue  # another variant's setting
        rd = RunDir(tmp_path / stage)
        args = [f"update={update}", f"variant={variant}", f"run_dir={rd.root}"]
        freeze(compose(args), rd)
        write_json(rd.init_dir / "manifest.json", {"init": {}})
        for t in (1, 2):
            rd.round_dir(t).mkdir(parents=True)
            for s in table():
                (rd.round_dir(t) / s.files[0]).write_text("x\n")
            write_json(rd.round_dir(t) / "manifest.json", {s.name: {} for s in table()})
        changed = compose([*args, change])
        with pytest.raises(ConfigError) as refusal:
            freeze(changed, rd)
        hint = str(refusal.value).split("restart_from=")[1].split()[0]
        t, first = parse_restart(hint)
        assert stages().index(first) <= stages().index(stage), (change, hint)
        freeze(changed, rd, hint)  # followed: the rerun redoes `first` and all after it
        if first == "init":
            assert not rd.init_dir.exists() and not rd.round_dir(1).exists()
            continue
        round_1 = [s.name for s in table()]
        assert not any(rd.is_done(1, s) for s in round_1[round_1.index(first):]), (change, hint)
        assert all(rd.is_done(1, s) for s in round_1[: round_1.index(first)]), (change, hint)
        assert not rd.round_dir(2).exists()


# -- no silent hang ---------------------------------------------------------------------------------------

def test_a_stage_that_stops_making_progress_is_stopped_with_a_message(tmp_path):
    launch = Launch(log_dir=tmp_path / "logs", stall_timeout=3, watch=tmp_path)
    (tmp_path / "stalls.py").write_text("print('loading', flush=True)\nimport time\ntime.sleep(60)\n")
    start = time.monotonic()
    with pytest.raises(StageFailed) as failed:
        run_stage(types.ModuleType("stalls"), [], "round 1: judge", "round_1.generation", launch,
                  Launcher(env={"PYTHONPATH": str(tmp_path)}))
    assert time.monotonic() - start < 30
    message = str(failed.value)
    assert "made no progress for 3 s" in message and "launch.stall_timeout" in message
    assert "loading" in message and str(tmp_path / "logs" / "round_1.generation.log") in message


@pytest.mark.parametrize("env", [True, False])
def test_a_stale_build_lock_is_removed_and_a_live_build_is_left_alone(tmp_path, monkeypatch, env):
    from selfreward import extensions

    # torch builds into $TORCH_EXTENSIONS_DIR/<op>, or ~/.cache/torch_extensions/py311_cpu/<op> without it
    if env:
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
        lock = tmp_path / "deepspeed_shm_comm" / "lock"
    else:
        monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        lock = tmp_path / ".cache" / "torch_extensions" / f"py{sys.version_info.major}{sys.version_info.minor}_cpu" \
            / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    assert extensions.stale_locks() == []  # a fresh lock may be a build in progress
    old = time.time() - 600
    os.utime(lock, (old, old))
    monkeypatch.setattr(extensions, "_building", lambda: True)
    assert extensions.stale_locks() == []  # a compiler is running: maybe its build
    monkeypatch.setattr(extensions, "_building", lambda: False)
    said = []
    extensions.prepare(said.append)
    assert not lock.exists() and "removed a stale build lock" in said[0]


# -- read-only finished runs ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_read_only_finished_run_reruns_reports_and_shows_its_status(finished, tmp_path, monkeypatch, capsys):
    from selfreward import loop
    from selfreward.cli import main

    run_dir = copy(finished, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(run_dir))
                        and mode & os.W_OK else real_access(p, mode, **kw))
    assert main(["run", *FAST, "rounds=1", f"run_dir={run_dir}"]) == 0
    assert "selfreward: rounds" in capsys.readouterr().out
    assert main(["status", str(run_dir)]) == 0
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").is_file()
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before  # nothing written
    assert main(["run", *FAST, "rounds=2", f"run_dir={run_dir}"]) == 2  # more rounds: needs a writable dir
    assert "is read-only" in capsys.readouterr().err
    assert loop  # the orchestrator ran in this process, with os.access patched


def test_a_resumed_chunk_log_removes_the_temp_files_a_kill_left(tmp_path):
    """A kill between atomic_write_text's write and its rename leaves `.<name>.tmp<pid>`; the stage's
    resume removes it (the committed chunks are in the files it was about to replace)."""
    from selfreward.rundir import ChunkLog

    log = ChunkLog(tmp_path / "judgments.jsonl")
    log.resume()
    log.append([{"i": 0}], {"n": 1})
    dead = _finished_pid()
    stale = [tmp_path / f".judgments.jsonl.progress.json.tmp{dead}", tmp_path / f".judgments.jsonl.partial.tmp{dead}"]
    live = tmp_path / f".judgments.jsonl.progress.json.tmp{os.getpid()}"  # a writer still at work
    for path in (*stale, live):
        path.write_text("half")
    chunks, records, extra = ChunkLog(tmp_path / "judgments.jsonl").resume()
    assert (chunks, records, extra) == (1, [{"i": 0}], {"n": 1}) and not [p for p in stale if p.exists()]
    assert live.exists()


def test_an_atomic_write_removes_what_a_killed_writer_of_the_same_file_left(tmp_path):
    from selfreward.files import atomic_write_text

    stale = tmp_path / f".manifest.json.tmp{_finished_pid()}"
    stale.write_text("half")
    atomic_write_text(tmp_path / "manifest.json", "{}")
    assert (tmp_path / "manifest.json").read_text() == "{}" and not stale.exists()


def _finished_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- one spelling of a stage's name ---------------------------------------------------------------------

STAGE_CALLS = {"output", "is_done", "mark_done", "problem", "verify", "outputs", "stage_model", "trained_model",
               "stage_seed", "log_name", "restart_value", "train", "run_judge", "run_candidates", "_read", "_training"}


def literal_stage_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of every stage name written as a string where a stage is named: an argument of a
    call that takes a stage, a manifest lookup, or a comparison with a stage."""
    import ast

    from selfreward.round import StageName

    names = {s.value for s in StageName}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            values = [*node.args, *(k.value for k in node.keywords)] if func in STAGE_CALLS else []
        elif isinstance(node, ast.Subscript) and "manifest" in ast.unparse(node.value):
            values = [node.slice]
        elif isinstance(node, ast.Compare) and any("stage" in ast.unparse(x) for x in [node.left, *node.comparators]):
            values = [node.left, *node.comparators]
        else:
            continue
        found += [(node.lineno, v.value) for v in values if isinstance(v, ast.Constant) and v.value in names]
    return found


def test_no_stage_name_is_written_as_a_string_outside_the_stage_table():
    from pathlib import Path

    import selfreward

    package = Path(selfreward.__file__).parent
    found = {f"{p.relative_to(package)}:{line}": name for p in sorted(package.rglob("*.py")) if p.name != "round.py"
             for line, name in literal_stage_names(p.read_text())}
    assert not found, found
    assert literal_stage_names('rd.is_done(t, "judge")\nmanifest(t)["pairs"]\nif stage == "init": pass') == [
        (1, "judge"), (2, "pairs"), (3, "init")]  # the check finds each kind it looks for
