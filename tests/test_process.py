"""`run_stage` with launch.in_process=true: a stage's exit code, exception or argparse error becomes the
same StageFailed a stage process's exit code would."""

import sys
import textwrap
import types

import pytest

from selfreward.process import Launch, StageFailed, run_stage

IN_PROCESS = Launch(in_process=True)

STAGE = textwrap.dedent('''
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
    """A stage module named like the real ones (only `selfreward.*` modules run in-process)."""
    module = types.ModuleType("selfreward.fake_stage")
    exec(STAGE, module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_in_process_stage_runs_main_with_its_arguments(stage_module):
    run_stage([sys.executable, "-m", stage_module, "--run-dir", "r"], "fake stage", launch=IN_PROCESS)
    assert sys.modules[stage_module].calls == [["--run-dir", "r"]]


@pytest.mark.parametrize("flag, code", [("--config-error", 2), ("--raise", 1), ("--bad-flag", 2)])
def test_in_process_failure_is_a_stage_failure(stage_module, flag, code, capsys):
    with pytest.raises(StageFailed) as err:
        run_stage([sys.executable, "-m", stage_module, flag], "fake stage", launch=IN_PROCESS)
    assert err.value.returncode == code and "fake stage failed" in str(err.value)
    if flag == "--raise":  # the traceback a stage process would have printed
        assert "RuntimeError: boom in the stage" in capsys.readouterr().err


def test_a_command_that_is_not_a_selfreward_stage_runs_as_its_own_process(stage_module):
    """Launchers (accelerate launch, torchrun: `python -m` too) start ranks that need processes of their
    own: only `python -m selfreward.*` runs in-process."""
    run_stage([sys.executable, "-m", "calendar", "2026"], "not a stage", launch=IN_PROCESS)
    with pytest.raises(StageFailed) as err:
        run_stage([sys.executable, "-c", "import sys; sys.exit(3)"], "a process", launch=IN_PROCESS)
    assert err.value.returncode == 3 and sys.modules[stage_module].calls == []


def test_in_process_output_goes_to_the_stage_log(stage_module, tmp_path, capsys):
    """With a log folder, what the stage prints (C-level writes included) lands in its log, and a
    failure's message quotes the log's last lines and says where it is."""
    launch = Launch(in_process=True, log_dir=tmp_path)
    with pytest.raises(StageFailed) as err:
        run_stage([sys.executable, "-m", stage_module, "--raise"], "fake stage", "fake", launch)
    log = (tmp_path / "fake.log").read_text()
    assert "RuntimeError: boom in the stage" in log and "boom in the stage" not in capsys.readouterr().err
    assert str(tmp_path / "fake.log") in str(err.value) and "RuntimeError: boom" in str(err.value)
