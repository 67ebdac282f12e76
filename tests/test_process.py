"""`run_stage`: a stage's entry point run as its launcher says. In this process (launch.in_process=true)
its exit code, exception or argparse error becomes the same StageFailed a stage process's exit code
would; the launcher is chosen from the stage's row and `launch.*`."""

import sys
import textwrap
import types

import pytest

from selfreward.config import compose
from selfreward.loop import launcher
from selfreward.process import IN_PROCESS, Launch, Launcher, StageFailed, run_stage
from selfreward.round import StageName, row
from selfreward.variants.temporal import LOOKAHEAD

FAKE_STAGE = textwrap.dedent('''
    import argparse

    calls = []

    def main(argv):
        calls.append(argv)
        if "--raise" in argv:
            raise RuntimeError("boom in the stage")
        if "--bad-flag" in argv:
            argparse.ArgumentParser().parse_args(["--no-such-flag"])
        return 2 if "--config-error" in argv else 0
''')


@pytest.fixture
def stage_module(monkeypatch):
    """A stage module: `main(argv)`, like the real ones."""
    module = types.ModuleType("selfreward.fake_stage")
    exec(FAKE_STAGE, module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_in_process_stage_runs_main_with_its_arguments(stage_module):
    run_stage(stage_module, ["--run-dir", "r"], "fake stage", launcher=IN_PROCESS)
    assert stage_module.calls == [["--run-dir", "r"]]


@pytest.mark.parametrize("flag, code", [("--config-error", 2), ("--raise", 1), ("--bad-flag", 2)])
def test_in_process_failure_is_a_stage_failure(stage_module, flag, code, capsys):
    with pytest.raises(StageFailed) as err:
        run_stage(stage_module, [flag], "fake stage", launcher=IN_PROCESS)
    assert err.value.returncode == code and "fake stage failed" in str(err.value)
    if flag == "--raise":  # the traceback a stage process would have printed
        assert "RuntimeError: boom in the stage" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, stage, prefix", [
    (["launch.in_process=true"], StageName.judge, None),
    (["launch.in_process=true", "launch.accelerate_config=null"], StageName.update, None),
    # accelerate launch and srun start ranks that need processes of their own, launch.in_process or not
    (["launch.in_process=true"], StageName.update, "accelerate.commands.launch"),
    (["launch.in_process=true", "launch.launcher='srun -N 2'"], LOOKAHEAD, "srun"),
    (["launch.in_process=false"], StageName.evaluate, sys.executable),
    (["launch.in_process=false", "launch.generation_processes=2"], StageName.candidates, "torch.distributed.run"),
])
def test_the_stage_row_and_launch_settings_choose_the_launcher(overrides, stage, prefix, tmp_path):
    chosen = launcher(compose(["recipe=tiny", "launch.accelerate_config=cpu_zero2", *overrides]), row(stage))
    if prefix is None:
        assert chosen is IN_PROCESS
    else:
        assert prefix in chosen.prefix and chosen.command("selfreward.stages", ["--round", "1"])[-3:] == [
            "selfreward.stages", "--round", "1"]


def test_a_stage_process_runs_the_module_with_its_arguments(tmp_path):
    (tmp_path / "exits_with_its_argument.py").write_text("import sys\nsys.exit(int(sys.argv[1]))\n")
    stage = types.ModuleType("exits_with_its_argument")
    child = Launcher(env={"PYTHONPATH": str(tmp_path)})
    run_stage(stage, ["0"], "a stage process", launcher=child)
    with pytest.raises(StageFailed) as err:
        run_stage(stage, ["3"], "a stage process", launcher=child)
    assert err.value.returncode == 3


def test_in_process_output_goes_to_the_stage_log(stage_module, tmp_path, capsys):
    """With a log folder, what the stage prints (C-level writes included) lands in its log, and a
    failure's message quotes the log's last lines and says where it is."""
    with pytest.raises(StageFailed) as err:
        run_stage(stage_module, ["--raise"], "fake stage", "fake", Launch(log_dir=tmp_path), IN_PROCESS)
    log = (tmp_path / "fake.log").read_text()
    assert "RuntimeError: boom in the stage" in log and "boom in the stage" not in capsys.readouterr().err
    assert str(tmp_path / "fake.log") in str(err.value) and "RuntimeError: boom" in str(err.value)
