"""Subprocess plumbing shared by the orchestrator and the processes it starts."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

from selfreward.errors import ConfigError

PR_SET_PDEATHSIG = 1
VERBOSE = "SELFREWARD_VERBOSE"  # set by `selfreward -v`: every stage's full output on the console


def verbose() -> bool:
    return os.environ.get(VERBOSE) == "1"


def quiet_environment(cuda: bool) -> None:
    """Settings every stage process inherits (unless verbose): no auto-detection warning from
    DeepSpeed on a CPU machine, no torchrun banner about OMP threads (torchrun's own default, said
    aloud; see `launched_env`), no dataset-map progress bars, and progress bars that redraw rarely in
    log files."""
    if verbose():
        return
    quiet = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_MININTERVAL": "10"}
    if not cuda:
        quiet["DS_ACCELERATOR"] = "cpu"
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards": the run's own lines say it


def launched_env() -> dict[str, str]:
    """For a stage started by torchrun or accelerate launch: one OMP thread per rank, which torchrun
    sets anyway when it is unset, with a banner saying so."""
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def quiet_warnings() -> None:
    """Filter, where they are raised, the library warnings selfreward cannot act on (unless verbose)."""
    if verbose():
        return
    import warnings

    # DeepSpeed's collectives call torch's deprecated all_gather_into_tensor
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed.c10d_logger")
    # peft asks transformers for is_gradient_checkpointing
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies.

    torchrun starts every rank in its own session, so killing the run's process group (kill -9,
    a scheduler pre-empting the job) would otherwise leave ranks training on as orphans, racing the
    rerun that resumes the same stage.
    """
    parent = os.getppid()
    _killed_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _killed_with_parent() -> None:
    """Ask Linux to SIGKILL the calling process when its parent dies (also run in a launched child
    between fork and exec, so the orchestrator's death takes a launcher with it)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stage_main(argv: list[str] | None, description: str, run: Callable[[argparse.Namespace], object],
               add_arguments: Callable[[argparse.ArgumentParser], object] = lambda parser: None) -> int:
    """The entry point every stage process shares: `--run-dir R --round t` (plus the stage's own
    arguments), death with the parent, and exit code 2 with one line for a ConfigError."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--round", type=int, required=True, help="t >= 1: round t; 0: the init stage (M1)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if argv is None:  # its own process (`python -m`); a stage called in the orchestrator is given its argv
        die_with_parent()
    quiet_warnings()
    try:
        return run(args) or 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class StageFailed(RuntimeError):
    def __init__(self, what: str, returncode: int, log: Path | None = None, why: str = ""):
        where = f"its output is in {log}; the last lines:\n{_tail(log)}" if log else "its output is above"
        super().__init__(f"{what} {why or f'failed with exit code {returncode}'} ({where})\n"
                         "Rerun the same command to resume from the last finished stage.")
        self.returncode = returncode


@dataclass(frozen=True)
class Launcher:
    """How a stage's entry point (a module with `main(argv)`) starts.

    `prefix=None`: `module.main(args)` in this process (launch.in_process=true), so torch, transformers
    and TRL load once per run. Otherwise `*prefix -m module *args` in a child process the orchestrator
    watches: `python` (a worker process), accelerate launch with a config file (training under
    DeepSpeed), torchrun (data-parallel generation), or `launch.launcher` (e.g. Slurm's srun)."""

    prefix: tuple[str, ...] | None = (sys.executable,)
    env: dict[str, str] = field(default_factory=dict)  # set for the child (launchers: one OMP thread per rank)

    def command(self, module: str, args: list[str]) -> list[str]:
        return [*(self.prefix or (sys.executable,)), "-m", module, *args]


IN_PROCESS = Launcher(prefix=None)


@dataclass
class Launch:
    """How the orchestrator watches its stages (the same for every stage of a run)."""

    log_dir: Path | None = None  # each stage's output goes to <log_dir>/<name>.log; None: this console (-v)
    stall_timeout: float | None = None  # stop a stage process that makes no progress for this long
    watch: Path | None = None  # a folder whose changing files count as progress, besides the log
    heartbeat: float = 60.0  # seconds between "still running" lines when stderr is not a terminal


def run_stage(module: ModuleType, args: list[str], what: str, name: str = "stage", launch: Launch | None = None,
              launcher: Launcher = Launcher()) -> None:
    """Run one stage, `module.main(args)`, as `launcher` says, and wait for it; raise StageFailed when
    it fails or stalls. A child process is watched: no new output and no file written under
    `launch.watch` for `launch.stall_timeout` seconds stops it with a message that says where it
    stalled."""
    launch = launch or Launch()
    log = launch.log_dir / f"{name}.log" if launch.log_dir else None
    cmd = launcher.command(module.__name__, args)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}: {' '.join(cmd)}\n")
    start = time.monotonic()
    with _progress_line(what, launch, start):
        if launcher.prefix is None:
            with _output_to(log):
                returncode = _run_main(module, args)
            why = ""
        else:
            returncode, why = _watched(cmd, log, launch, launcher.env)
    if returncode:
        raise StageFailed(what, returncode, log, why)
    _say(f"{what}: done in {_clock(time.monotonic() - start)}" if log else "")


def _watched(cmd: list[str], log: Path | None, launch: Launch, env: dict[str, str]) -> tuple[int, str]:
    """Run a child process (its output into `log`), stopping it when it stalls. (exit code, why stopped)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    out = open(log, "a", encoding="utf-8") if log else None
    try:
        # its own session, so a stall can kill its whole tree; and killed with the orchestrator, whose
        # own kill (kill -9, a pre-empted job) would otherwise leave a launcher and its ranks running
        child = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                 start_new_session=True, preexec_fn=_killed_with_parent)
        last, marker = time.monotonic(), None
        while True:
            try:
                return child.wait(timeout=5), ""
            except subprocess.TimeoutExpired:
                pass
            now_marker = _progress_marker(log, launch.watch)
            if now_marker != marker:
                last, marker = time.monotonic(), now_marker
            elif launch.stall_timeout and time.monotonic() - last > launch.stall_timeout:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                return 124, (f"made no progress for {launch.stall_timeout:.0f} s (no output, no file written "
                             f"under {launch.watch}; launch.stall_timeout) and was stopped")
    except BaseException:
        if "child" in locals() and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        raise
    finally:
        if out:
            out.close()


def _progress_marker(log: Path | None, watch: Path | None) -> tuple:
    """What changes while a stage works: its log's size and the newest file time under `watch`."""
    size = log.stat().st_size if log and log.exists() else 0
    newest = 0.0
    if watch and watch.is_dir():
        for root, _dirs, files in os.walk(watch):
            for f in files:
                try:
                    newest = max(newest, os.stat(os.path.join(root, f)).st_mtime)
                except OSError:
                    pass
    return size, newest


@contextmanager
def _output_to(log: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr, C libraries' included, to `log` for the block."""
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8", buffering=1) as f, redirect_stdout(f), redirect_stderr(f):
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextmanager
def _progress_line(what: str, launch: Launch, start: float) -> Iterator[None]:
    """While a stage runs with its output in a log: a live spinner on a terminal, otherwise a line when
    it starts and one every `launch.heartbeat` seconds, so a long stage never looks hung. They go to a
    copy of stderr taken now, which an in-process stage's redirection of stderr to its log leaves alone."""
    if launch.log_dir is None:
        yield
        return
    sys.stderr.flush()
    with os.fdopen(os.dup(2), "w", buffering=1) as console:
        if console.isatty():
            from rich.console import Console

            with Console(file=console).status(what):
                yield
            return
        print(f"{what} ...", file=console)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(launch.heartbeat):
                print(f"  {what}: still running ({_clock(time.monotonic() - start)})", file=console)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _say(line: str) -> None:
    if line:
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    # progress bars redraw with carriage returns: keep what the last redraw shows
    return "\n".join("  " + line.rsplit("\r", 1)[-1][:300] for line in text[-lines:])


def _run_main(module: ModuleType, args: list[str]) -> int:
    try:
        return module.main(args) or 0
    except SystemExit as e:  # argparse and sys.exit inside the stage
        return e.code if isinstance(e.code, int) else 1
    except Exception:  # what a stage process would print before exiting 1
        traceback.print_exc()
        return 1
    finally:
        # The stage's models are unreachable now; give their memory back before the next stage loads.
        # Freezing what survives (modules, caches) keeps later collections from rescanning it.
        gc.collect()
        gc.freeze()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
