"""The testbed's tables that read a sweep's run files, not only its metrics: the held-out pass rate per
constraint type, and the DPO pairs sorted by what the checker says of each side (`selfreward report`
prints both under the arm table)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from statistics import mean
from typing import Callable, Hashable

from selfreward.config import load_frozen
from selfreward.files import read_jsonl
from selfreward.pairs import unflipped
from selfreward.round import StageName
from selfreward.rundir import RunDir
from selfreward.testbed import check


def m1_of(run_dir: Path) -> str:
    """The run (its folder's name) whose init trained this run's M1: a sweep shares one M1 among the
    runs with the same init settings (from a run that may have it shared in turn), and the reasoning
    judge trains its own."""
    seen = {run_dir.name}
    while source := RunDir(run_dir).manifest(None).get(StageName.init, {}).get("shared_from"):
        run_dir = run_dir.parent / Path(source).name  # a sweep's runs are siblings; the path was the sweep's
        if run_dir.name in seen or not run_dir.is_dir():
            break
        seen.add(run_dir.name)
    return run_dir.name


def m1_groups(dirs: dict[str, list[Path]], key: Callable[[Path], Hashable] = m1_of) -> dict[tuple, list[Path]]:
    """(key of the runs' M1, the arms that start from it) -> their run directories, in order; the key is
    the M1 by default, or whatever else must agree for runs to be pooled."""
    runs: dict[Hashable, list[tuple[str, Path]]] = {}
    for label, arm in dirs.items():
        for d in arm:
            runs.setdefault(key(d), []).append((arm_name(label), d))
    return {(k, tuple(dict.fromkeys(label for label, _ in pairs))): [d for _, d in pairs] for k, pairs in runs.items()}


def arm_name(label: str) -> str:
    """An arm's settings without what the report says about them (a variant's label, what a control is)."""
    return label.split(" (", 1)[0]


def type_table(dirs: dict[str, list[Path]]) -> list[str]:
    """The constraint family's held-out greedy pass rate per type: M1, then each arm at its last round,
    the mean over the arm's runs (the held-out types last, marked)."""
    def per_type(path: Path) -> dict:
        return json.loads(path.read_text())["testbed"]["per_task"]

    first = next(iter(dirs.values()))[0]
    tb = load_frozen(first).testbed
    names = [*tb.tasks, *tb.heldout_tasks]
    heads = [*tb.tasks, *(f"{t} (held-out type)" for t in tb.heldout_tasks)]
    rows = {}
    m1s = m1_groups(dirs)
    for (_, labels), runs in m1s.items():
        rows["M1" if len(m1s) == 1 else f"M1 of {', '.join(labels)}"] = [
            per_type(RunDir(d).init_dir / "eval.json") for d in runs]
    for label, runs in dirs.items():
        rows[label] = [per_type(max(d.glob("round_*/eval.json"), key=lambda p: int(p.parent.name[6:]))) for d in runs]
    sizes = Counter(r["task"] for r in read_jsonl(first / "testbed" / "heldout_prompts.jsonl"))
    out = [f"Held-out greedy pass rate per constraint type ({'-'.join(map(str, sorted(set(sizes.values()))))} "
           "prompts a type), M1 and each arm at its last round, the mean over the arm's runs:", "",
           "| setting | runs | " + " | ".join(heads) + " |", "|" + " --- |" * (len(heads) + 2)]
    for label, evals in rows.items():
        cells = [format(mean(e[t]["accuracy"] for e in evals), ".3f") for t in names]
        out.append(f"| {label} | {len(evals)} | " + " | ".join(cells) + " |")
    return out


def pair_table(dirs: dict[str, list[Path]]) -> list[str]:
    """The DPO arms' training pairs by the checker's verdict on both sides, pooled over each arm's rounds
    and runs: how often the round's preference was right, wrong, or one the checker cannot decide (both
    sides right, or both wrong), and how much longer the chosen side was."""
    out = ["| setting | pairs a round | right (chosen passes, rejected fails) | wrong (the reverse) | both pass "
           "| both fail | decided pairs ordered right | chosen − rejected (words) |", "|" + " --- |" * 8]
    for label, runs in dirs.items():
        files = [f for d in runs for f in d.glob("round_*/pairs.jsonl")]
        pairs = [unflipped(r) for f in files for r in read_jsonl(f) if r.get("kind", "response") == "response"]
        if not pairs:
            continue  # an SFT arm, or no round yet
        verdicts = Counter((bool(check(p["prompt"], p["chosen"])), bool(check(p["prompt"], p["rejected"])))
                           for p in pairs)
        right, wrong = verdicts[True, False], verdicts[False, True]
        kinds = ((True, False), (False, True), (True, True), (False, False))
        shares = [format(verdicts[k] / len(pairs), ".2f") for k in kinds]
        margin = mean(len(p["chosen"].split()) - len(p["rejected"].split()) for p in pairs)
        out.append(f"| {label} | {len(pairs) / len(files):.1f} | " + " | ".join(shares)
                   + f" | {format(right / (right + wrong), '.2f') if right + wrong else '–'} | {margin:+.1f} |")
    return out
