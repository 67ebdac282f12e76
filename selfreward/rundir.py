"""The run directory: the documented contract between stages.

    <run_dir>/config.yaml                 resolved config, written once by the orchestrator
    <run_dir>/base_model/                 the tiny model + tokenizer (only when model.name_or_path is null)
    <run_dir>/init/model/                 M1
    <run_dir>/round_<t>/prompts.jsonl     {id, prompt}
                        candidates.jsonl  {prompt_id, prompt, candidate_id, response}
                        judgments.jsonl   {prompt_id, candidate_id, score, scores, judgments}
                        (and the files of the stages a variant adds: its module in selfreward.variants)
                        pairs.jsonl       {prompt_id, prompt, chosen, rejected, score_chosen, score_rejected, kind}
                        sft.jsonl         {prompt_id, prompt, response, score}
                        model/            M_{t+1}
                        metrics.json
                        manifest.json     one entry per finished stage: records, seconds, details

Every file is written to a temporary name and renamed, so a file that exists is complete; a stage is
done when its manifest entry exists. Rerunning a command therefore skips finished stages.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from selfreward.errors import ConfigError
from selfreward.files import (
    atomic_write_text,
    differences,
    file_sha256,
    fingerprint,
    remove_dead_temps,
    write_json,
    write_jsonl,
)
from selfreward.round import Role, StageName, restart_value, round_stage_names, row

LOCK_NAME = ".selfreward.lock"  # see selfreward.lock
# The first line of every config.yaml selfreward writes: what marks a directory as a run directory.
CONFIG_HEADER = "# selfreward run directory: the resolved config of this run (written by selfreward)\n"


class ChunkLog:
    """Records of a long stage, appended chunk by chunk so a killed stage loses at most one chunk.

    `<name>.partial` holds the records; `<name>.progress.json` (written atomically after each append)
    says how many chunks and records are committed. Anything past the committed count (a chunk
    appended but not yet committed, or a line torn by a kill) is cut off on resume. `finish` renames
    the partial file to its final name.
    """

    def __init__(self, final: Path):
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        self.progress = final.with_name(final.name + ".progress.json")
        self.chunks = self.records = 0  # committed so far; set by resume(), advanced by append()

    def resume(self) -> tuple[int, list[dict], dict]:
        """(chunks committed, their records, extra state saved with the last commit). Call before
        the first append."""
        for path in (self.partial, self.progress):  # the progress file may not be written again
            remove_dead_temps(path)
        if not self.progress.is_file() or not self.partial.is_file():
            self.partial.unlink(missing_ok=True)
            self.chunks = self.records = 0
            return 0, [], {}
        state = json.loads(self.progress.read_text())
        with open(self.partial, "rb") as f:
            lines = f.read().split(b"\n")[: state["records"]]
        records = []
        for lineno, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{self.partial}:{lineno}: not valid JSON ({e.msg}) in a committed chunk; "
                                  f"delete {self.partial.name} and {self.progress.name} to redo the stage") from None
        atomic_write_text(self.partial, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.chunks, self.records = state["chunks"], len(records)
        return self.chunks, records, state.get("extra", {})

    def append(self, records: list[dict], extra: dict | None = None) -> None:
        """Commit one chunk of records (and any state the stage needs to resume after it)."""
        with open(self.partial, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        self.chunks, self.records = self.chunks + 1, self.records + len(records)
        write_json(self.progress, {"chunks": self.chunks, "records": self.records, "extra": extra or {}})

    def run_chunks(self, inputs: list, size: int, seed: int, fn: Callable[[list, int], list[dict]],
                   desc: str) -> list[dict]:
        """Apply `fn(chunk, chunk_seed)` to fixed-size chunks of `inputs`, committing each result, and
        skip the chunks an interrupted attempt already committed; the caller then calls `finish`.
        Chunk i always holds the same inputs and gets the same seed, so a resumed stage reproduces
        an uninterrupted one."""
        from tqdm.auto import tqdm

        done, records, _ = self.resume()
        chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        for i in tqdm(range(done, len(chunks)), initial=done, total=len(chunks), desc=desc, unit="chunk"):
            new = fn(chunks[i], seed * 1_000_003 + i)
            records += new
            self.append(new)
        return records

    def finish(self, records: list[dict] | None = None) -> None:
        """Publish the committed records, or `records` instead (a stage that rewrote them at the end)."""
        if records is None:
            os.replace(self.partial, self.final)
        else:
            write_jsonl(self.final, records)
            self.partial.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)

    def committed(self) -> int | None:
        """Records committed so far, or None when the stage has not started."""
        return json.loads(self.progress.read_text())["records"] if self.progress.is_file() else None


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base_model(self) -> Path:
        return self.root / "base_model"

    @property
    def init_dir(self) -> Path:
        return self.root / StageName.init

    @property
    def testbed_files(self) -> dict[str, Path]:
        """The testbed's data, written by `selfreward.testbed.write`."""
        return {k: self.root / "testbed" / f"{k}.jsonl" for k in ("ift", "eft", "heldout_prompts", "heldout_eft")}

    def round_dir(self, t: int) -> Path:
        return self.root / f"round_{t}"

    def stage_dir(self, t: int | None) -> Path:
        """Round 0 / None is the init stage."""
        return self.init_dir if not t else self.round_dir(t)

    def output(self, t: int, stage: str) -> Path:
        """The main output of a stage of round t (`selfreward.round.table()`)."""
        return self.round_dir(t) / row(stage).files[0]

    def training_data(self, cfg, t: int) -> Path:
        """The update's input: `pairs.jsonl` (DPO) or `sft.jsonl` (SFT), both written by the pairs stage."""
        return self.round_dir(t) / row(StageName.pairs).files[cfg.update.method.value == "sft"]

    def model(self, t: int | None) -> Path:
        return self.stage_dir(t) / "model"

    def trained_model(self, t: int | None, stage: str) -> Path:
        """Where a training stage saves its model (its TRL checkpoints go to the sibling `train/`):
        the round's `model/` (init: init/model/), or `model/` in the folder of a stage a variant adds."""
        return self.model(t) if stage in (StageName.init, StageName.update) else self.output(t, stage) / "model"

    def training_input(self, cfg, t: int, stage: str) -> Path:
        """What a round's training stage trains on: the pairs stage's file for the update, or
        `pairs.jsonl` in the folder of a stage a variant adds (its DPO pairs)."""
        return self.training_data(cfg, t) if stage == StageName.update else self.output(t, stage) / "pairs.jsonl"

    # -- which model plays which part ---------------------------------------------------------
    def base(self, cfg) -> str:
        """The starting checkpoint: the user's path or hub id, or the embedded tiny model."""
        return cfg.model.name_or_path or str(self.base_model)

    def initial(self, cfg) -> str:
        """M1: the init SFT's output, or the base model itself with init.skip=true."""
        return self.base(cfg) if cfg.init.skip else str(self.model(None))

    def policy(self, cfg, t: int) -> str:
        """M_t: the model that writes prompts, answers and judges in round t."""
        return str(self.model(t - 1)) if t > 1 else self.initial(cfg)

    def prompt_writer(self, cfg, t: int) -> str:
        """The model that writes round t's prompts (`prompts.model`)."""
        return {"current": self.policy(cfg, t), "initial": self.initial(cfg)}.get(cfg.prompts.model, cfg.prompts.model)

    def stage_model(self, cfg, t: int, stage: str) -> str | None:
        """The model that runs a stage of round t, by the role the stage table gives it."""
        role = row(stage).model
        if callable(role):  # a variant's own model, e.g. one a stage before it trained
            return role(self, cfg, t)
        if role is Role.judge:  # scores that need no model: the variant's (random), the checker
            if not cfg.variant.judge_model or cfg.judge.method.value == "oracle":
                return None
            return cfg.judge.model or self.policy(cfg, t)
        roles = {Role.policy: self.policy, Role.initial: lambda c, _: self.initial(c),
                 Role.prompt_writer: self.prompt_writer, Role.previous: lambda c, r: self.policy(c, r - 1)}
        return roles[role](cfg, t) if role else None

    # -- manifests ---------------------------------------------------------------------------
    def manifest(self, t: int | None) -> dict:
        path = self.stage_dir(t) / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def is_done(self, t: int | None, stage: str) -> bool:
        return stage in self.manifest(t)

    def outputs(self, t: int | None, stage: str) -> list[Path]:
        """The existing outputs of a stage (stage table; the init's model) for its manifest entry."""
        names = ("model",) if stage == StageName.init else row(stage).files
        folder = self.stage_dir(t)
        return [folder / n for n in names if not n.startswith(".") and n != "train" and (folder / n).exists()]

    def problem(self, t: int | None, stage: str) -> str | None:
        """Why a finished stage's outputs are not what it wrote (missing, edited, truncated), or None."""
        recorded = self.manifest(t).get(stage, {}).get("outputs")
        if not recorded:  # not finished, or finished before outputs were recorded
            return None
        for name, fp in recorded.items():
            path = self.root / name
            found = differences(fp, fingerprint(path), name) if path.exists() else [f"{name}: missing"]
            if found:
                return found[0]
        return None

    def verify(self, t: int | None, stage: str) -> None:
        """Raise a ConfigError naming the damaged output and the restart_from that redoes its stage."""
        why = self.problem(t, stage)
        if why:
            hint = restart_value(t, stage)
            raise ConfigError(f"{self.root / why.split(':')[0]}: {why.split(': ', 1)[1]}. The {stage} stage "
                              f"of {'the init' if not t else f'round {t}'} is not what it wrote; rerun with "
                              f"restart_from={hint} to redo it and everything after it.")

    def check_is_run_dir(self) -> None:
        """Refuse a non-empty directory selfreward did not write: its files are someone else's."""
        # a directory holding only a run's lock is a run directory another command is starting
        if not self.root.is_dir() or all(p.name == LOCK_NAME for p in self.root.iterdir()):
            return
        ours = self.config.is_file() and self.config.read_text(errors="replace").startswith(CONFIG_HEADER)
        shared = StageName.init in self.manifest(None)  # prepared by a sweep that shares an init
        if not (ours or shared):
            raise ConfigError(f"{self.root} exists, holds files and is not a selfreward run directory (no "
                              "config.yaml written by selfreward): nothing was written. Choose a new or empty "
                              "run_dir.")

    def rounds(self) -> list[int]:
        found = (p.name.removeprefix("round_") for p in self.root.glob("round_*"))
        return sorted(int(n) for n in found if n.isdigit())

    def restart_from(self, t: int, stage: str) -> list[Path]:
        """Move `stage` of round t (t=0: init), every later stage and every later round to
        `<run_dir>/superseded/<time>/`, so they run again; nothing is deleted. Returns what moved."""
        dest = self.root / "superseded" / time.strftime("%Y%m%d-%H%M%S")
        order = round_stage_names() if t else (StageName.init,)
        moved = []

        def move(path: Path) -> None:
            if path.exists():
                target = dest / path.relative_to(self.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved.append(path)

        if t == 0:
            move(self.init_dir)
        else:
            later = order[order.index(stage) :]
            manifest = self.manifest(t)
            for s in later:
                manifest.pop(s, None)
                for name in row(s).files:
                    for suffix in ("", ".partial", ".progress.json"):
                        move(self.round_dir(t) / (name + suffix))
            move(self.round_dir(t) / "metrics.json")
            if self.round_dir(t).is_dir():
                write_json(self.round_dir(t) / "manifest.json", manifest)
        for r in self.rounds():
            if r > t:
                move(self.round_dir(r))
        return moved

    def mark_done(self, t: int | None, stage: str, inputs: Iterable[Path | str] = (), **entry: Any) -> None:
        """Record a finished stage with the hashes of its input files (a model input, a directory,
        is recorded by path: hashing many GB of weights would cost more than it tells) and of the
        config it ran under."""
        manifest = self.manifest(t)
        manifest[stage] = {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **entry,
            "config_sha256": file_sha256(self.config),
            "inputs": {str(p): file_sha256(Path(p)) if Path(p).is_file() else "model" for p in inputs},
            "outputs": {str(p.relative_to(self.root)): fingerprint(p) for p in self.outputs(t, stage)},
        }
        write_json(self.stage_dir(t) / "manifest.json", manifest)
