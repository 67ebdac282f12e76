"""`selfreward report PATH [PATH ...] [--out DIR] [--html]`: report.md and PNG plots, readable in a minute.

For one run: per round, the judge's health (unparsed judgments, mode share, score histogram with the
unparsed ones as their own bar), the training data (pairs, lengths), the evaluation (judge accuracy,
win rates) and, on the testbed, the accuracies the program checks. For sweeps (one or several sweep
directories, e.g. the arms of an ablation): every setting that differs between runs, the seed
excepted, side by side, mean ± sample standard deviation (n - 1) over seeds, per round.

Every per-round panel has round 0 = M1 on its x axis. Model panels (accuracy, judge accuracy, win
rates) plot the model after round x, so M1 sits at 0; data panels (pairs, lengths, parse failures)
plot the data round x produced. Rates keep the [0, 1] axis and lengths start at zero, so a small
change does not look like a cliff. `--html` adds report.html, a page to read what the judge chose
(`selfreward.report_html`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from selfreward.config import load_frozen  # noqa: E402
from selfreward.errors import ConfigError  # noqa: E402
from selfreward.judge import describe as describe_judge  # noqa: E402
from selfreward.report_html import write_html  # noqa: E402
from selfreward.report_testbed import m1_groups, m1_of, pair_table, type_table  # noqa: E402
from selfreward.variants import REGISTRY  # noqa: E402


def _eval(key: str) -> Callable[[dict], float | None]:
    return lambda m: m.get("eval", {}).get(key)


@dataclass(frozen=True)
class Curve:
    title: str
    get: Callable[[dict], float | None]
    kind: str  # "rate" (axis [0, 1]), "length" or "count" (axis from 0), "delta" (axis through 0)
    m1: Callable[[dict], float | None] | None = None  # M1's value, read from round 1's metrics
    model_of_round: int = 0  # -1: the value describes M_t (round t's judge), plotted at t - 1


CURVES = [
    Curve("held-out accuracy, greedy (testbed)", _eval("testbed_accuracy"), "rate", _eval("testbed_m1_accuracy")),
    Curve("held-out accuracy, sampled (testbed)", _eval("testbed_sampled_accuracy"), "rate",
          _eval("testbed_m1_sampled_accuracy")),
    Curve("held-out accuracy, majority of N (testbed)", _eval("testbed_majority_accuracy"), "rate",
          _eval("testbed_m1_majority_accuracy")),
    Curve("accuracy gain vs M1 (testbed)", _eval("testbed_accuracy_gain"), "delta", lambda m: 0.0),
    Curve("judge accuracy, held-out (testbed)", _eval("testbed_judge_accuracy"), "rate",
          _eval("testbed_m1_judge_accuracy")),
    Curve("judge on own candidates (testbed)", _eval("testbed_judge_own_pairwise_accuracy"), "rate"),
    Curve("generation-verification gap (testbed)", _eval("testbed_generation_verification_gap"), "delta"),
    Curve("chosen correct (testbed)", _eval("testbed_pair_precision"), "rate"),
    Curve("held-out types, greedy (testbed)", _eval("testbed_heldout_types_accuracy"), "rate",
          _eval("testbed_m1_heldout_types_accuracy")),
    Curve("held-out best of N (testbed)", _eval("testbed_best_of_n_accuracy"), "rate",
          _eval("testbed_m1_best_of_n_accuracy")),
    Curve("judge's pick, held-out (testbed)", _eval("testbed_heldout_judge_pick_accuracy"), "rate",
          _eval("testbed_m1_heldout_judge_pick_accuracy")),
    Curve("gap, held-out (testbed)", _eval("testbed_heldout_generation_verification_gap"), "delta",
          _eval("testbed_m1_heldout_generation_verification_gap")),
    Curve("greedy answer length (words, testbed)", _eval("testbed_mean_words"), "length",
          _eval("testbed_m1_mean_words")),
    Curve("win rate vs M1", _eval("win_rate_vs_initial"), "rate", lambda m: 0.5),
    Curve("win rate vs previous", _eval("win_rate_vs_previous"), "rate"),
    Curve("judge pairwise accuracy, held-out EFT", _eval("judge_pairwise_accuracy"), "rate", model_of_round=-1),
    Curve("unparsed judgments", lambda m: m["judge"].get("judgment_parse_failure_rate"), "rate"),
    Curve("most common score's share", lambda m: m["judge"].get("mode_share"), "rate"),
    Curve("training examples (pairs / SFT)", lambda m: m["counts"].get("pairs", m["counts"].get("sft_examples")),
          "count"),
    Curve("chosen length (tokens)", lambda m: m["lengths_tokens"].get("chosen", m["lengths_tokens"].get("selected")),
          "length"),
    Curve("rejected length (tokens)", lambda m: m["lengths_tokens"].get("rejected"), "length"),
    Curve("all candidates' length (tokens)", lambda m: m["lengths_tokens"].get("all"), "length"),
]
CURVE = {c.title: c for c in CURVES}
SEED_KEYS = ("seed",)


def sample_sd(values: list[float]) -> float | None:
    """The sample standard deviation (n - 1), as a reader of "mean ± sd" expects; None for one value."""
    return stdev(values) if len(values) > 1 else None


def load_rounds(run_dir: Path) -> list[dict]:
    paths = sorted(run_dir.glob("round_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    return [json.loads(p.read_text()) for p in paths]


def points(curve: Curve, rounds: list[dict]) -> list[tuple[int, float]]:
    """(x, value) of one curve over a run's rounds, M1 at x = 0 where the curve has a value for it."""
    out = [(m["round"] + curve.model_of_round, curve.get(m)) for m in rounds if curve.get(m) is not None]
    if out and curve.m1 and rounds[0]["round"] == 1 and curve.m1(rounds[0]) is not None:
        out = [(0, curve.m1(rounds[0])), *out]
    return out


def _fmt(v, spec=".2f") -> str:
    return "–" if v is None else format(v, spec)


def _plot_curves(series: dict[str, dict[str, list]], path: Path, title: str, legend: str) -> None:
    fig = curves_figure(series, title, legend)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def curves_figure(series: dict[str, dict[str, list]], title: str, legend: str):
    """series: curve title -> {label: [(x, mean, sd)]}: one panel per curve with data, one line per label.
    Each label keeps one colour in every panel (a panel where an arm has no data, e.g. the judge's for
    an arm that ranks by votes, must not shift the others' colours), and the one legend lists every label."""
    labels = list(dict.fromkeys(label for s in series.values() for label, pts in s.items() if pts))
    colour = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    names = [c.title for c in CURVES if any(series[c.title].values())]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    last = max((x for s in series.values() for pts in s.values() for x, _, _ in pts), default=1)
    for ax, name in zip(axes.flat, names):
        for label, pts in series[name].items():
            if pts:
                xs, ys, sds = zip(*pts)
                ax.errorbar(xs, ys, yerr=[sd or 0.0 for sd in sds], marker="o", capsize=3, label=label,
                            color=colour[label])
        curve = CURVE[name]
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round (0 = M1)", fontsize=8)
        ax.set_xticks(range(0, last + 1))
        ax.set_xlim(-0.3, last + 0.3)
        if curve.kind == "rate":
            ax.set_ylim(-0.03, 1.03)
        elif curve.kind in ("length", "count"):
            ax.set_ylim(0, max(ax.get_ylim()[1], 1) * 1.08)  # headroom: the highest point is not cut by the frame
        else:
            ax.axhline(0.0, color="grey", linewidth=0.8)
    if len(labels) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colour[label], marker="o") for label in labels]
        fig.legend(handles, labels, title=legend, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if len(labels) > 1 else 0, 1, 1))
    return fig


def _plot_histograms(rounds: list[dict], path: Path) -> None:
    """The share of each score per round, the judgments that did not parse as their own bar."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    width = 0.8 / max(len(rounds), 1)
    labels: list[str] = []
    for m in rounds:
        labels += [k for k in m["judge"]["score_histogram"] if k not in labels]
    labels = sorted(labels, key=float) + ["unparsed"]
    for i, m in enumerate(rounds):
        counts = {**m["judge"]["score_histogram"], "unparsed": m["counts"].get("judgment_parse_failures", 0)}
        total = sum(counts.values()) or 1
        ax.bar([j + i * width for j in range(len(labels))], [counts.get(k, 0) / total for k in labels], width,
               label=f"round {m['round']}")
    ax.set_xticks([j + width * (len(rounds) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_xlabel("self-judge score (rounded)")
    ax.set_ylabel("share of judgments")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report_run(run_dir: Path, out: Path) -> Path:
    rounds = load_rounds(run_dir)
    if not rounds:
        raise ConfigError(f"{run_dir} has no finished round (round_*/metrics.json)")
    series = {c.title: {run_dir.name: [(x, v, None) for x, v in points(c, rounds)]} for c in CURVES}
    _plot_curves(series, out / "rounds.png", str(run_dir), "run")
    _plot_histograms(rounds, out / "scores.png")
    lines = [f"# selfreward report: {run_dir}", "", "![per round](rounds.png)", "", "![scores](scores.png)", "",
             "| round | prompts | train on | unparsed judgments | mode share | judge acc | win vs prev | win vs M1 "
             "| len chosen | len rejected | loss |", "|" + " --- |" * 11]
    for m in rounds:
        c, ev = m["counts"], m.get("eval", {})
        lines.append(
            f"| {m['round']} | {c['prompts']} | {CURVE['training examples (pairs / SFT)'].get(m)} "
            f"| {_fmt(m['judge']['judgment_parse_failure_rate'], '.1%')} | {_fmt(m['judge']['mode_share'])} "
            f"| {_fmt(ev.get('judge_pairwise_accuracy'))} | {_fmt(ev.get('win_rate_vs_previous'))} "
            f"| {_fmt(ev.get('win_rate_vs_initial'))} | {_fmt(CURVE['chosen length (tokens)'].get(m), '.1f')} "
            f"| {_fmt(m['lengths_tokens'].get('rejected'), '.1f')} | {_fmt(m['training'].get('train_loss'), '.4f')} |"
        )
    accuracy = points(CURVE["held-out accuracy, greedy (testbed)"], rounds)
    if accuracy:
        other = {c: dict(points(CURVE[c], rounds)) for c in ("held-out accuracy, sampled (testbed)",
                                                               "judge accuracy, held-out (testbed)")}
        lines += ["", "Testbed, checked by the program (the model after round t; round 0 = M1):", "",
                  "| after round | greedy accuracy | sampled accuracy | judge accuracy |", "| --- | --- | --- | --- |"]
        lines += [f"| {t} | {_fmt(v)} | {' | '.join(_fmt(o.get(t)) for o in other.values())} |" for t, v in accuracy]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep_runs(paths: list[Path]) -> list[dict]:
    """Every finished run of the given sweep directories (sweep.json) or run directories, each with
    the settings it was given ("overrides")."""
    runs = []
    for path in paths:
        if (path / "sweep.json").is_file():
            runs += [r for r in json.loads((path / "sweep.json").read_text())["runs"]]
        elif (path / "config.yaml").is_file():
            runs.append({"name": path.name, "overrides": {}, "run_dir": str(path), "status": "done"})
        else:
            raise ConfigError(f"{path} is neither a run directory (config.yaml) nor a sweep (sweep.json)")
    return runs


def arm_label(overrides: dict, compared: list[str]) -> str:
    """The arm's settings that differ between arms; the controls say what they are."""
    label = ",".join(f"{k}={overrides[k]}" for k in compared if k in overrides) or "defaults"
    if overrides.get("judge.method") == "oracle":
        label += " (ceiling: the checker's rewards, not self-rewarding)"
    variant = REGISTRY.get(str(overrides.get("variant")))
    if variant and variant.label:
        label += f" ({variant.label})"
    return label


# The string testbed's table, and the constraint family's (its columns that no arm has a value for,
# e.g. held-out types when none are configured, left out).
TESTBED_COLUMNS = ["accuracy gain vs M1 (testbed)", "held-out accuracy, greedy (testbed)",
                   "held-out accuracy, sampled (testbed)", "held-out accuracy, majority of N (testbed)",
                   "judge on own candidates (testbed)", "chosen correct (testbed)",
                   "generation-verification gap (testbed)", "training examples (pairs / SFT)"]
CONSTRAINT_COLUMNS = ["accuracy gain vs M1 (testbed)", "held-out accuracy, greedy (testbed)",
                      "held-out types, greedy (testbed)", "held-out accuracy, sampled (testbed)",
                      "held-out best of N (testbed)", "judge accuracy, held-out (testbed)",
                      "judge's pick, held-out (testbed)", "gap, held-out (testbed)", "judge on own candidates (testbed)",
                      "chosen correct (testbed)", "greedy answer length (words, testbed)",
                      "training examples (pairs / SFT)"]
GENERAL_COLUMNS = ["win rate vs M1", "win rate vs previous", "judge pairwise accuracy, held-out EFT",
                   "training examples (pairs / SFT)", "chosen length (tokens)"]


def report_sweep(paths: list[Path], out: Path) -> Path:
    runs = sweep_runs(paths)
    keys = sorted({k for r in runs for k in r["overrides"]})
    compared = [k for k in keys if k not in SEED_KEYS and len({r["overrides"].get(k) for r in runs}) > 1]
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    seeds: dict[str, list[tuple[str, list[dict]]]] = defaultdict(list)
    dirs: dict[str, list[Path]] = defaultdict(list)
    for run in runs:
        rounds = load_rounds(Path(run["run_dir"]))
        if rounds:
            label = arm_label(run["overrides"], compared)
            groups[label].append(rounds)
            seeds[label].append((str(run["overrides"].get("seed", "-")), rounds))
            dirs[label].append(Path(run["run_dir"]))
    _check_heldout_versions(groups)
    series = {c.title: {} for c in CURVES}
    rows = []
    for label, arm in groups.items():
        for curve in CURVES:
            by_round = defaultdict(list)
            for rounds in arm:
                for x, v in points(curve, rounds):
                    by_round[x].append(v)
            series[curve.title][label] = [(x, mean(v), sample_sd(v)) for x, v in sorted(by_round.items())]
        rows.append((label, len(arm), {c.title: (series[c.title][label] or [None])[-1] for c in CURVES}))
    legend = ", ".join(compared) or "runs"
    _plot_curves(series, out / "sweep.png", "mean ± sample sd (n - 1) over seeds", legend)
    testbed = any(last["held-out accuracy, greedy (testbed)"] for _, _, last in rows)
    cols = TESTBED_COLUMNS if testbed else GENERAL_COLUMNS
    constraint = any(last["judge's pick, held-out (testbed)"] for _, _, last in rows)  # the constraint family
    if constraint:
        cols = [c for c in CONSTRAINT_COLUMNS if any(last[c] for _, _, last in rows)]
    over = ", ".join(k for k in keys if k in SEED_KEYS) or "runs"
    lines = [f"# selfreward sweep report: {', '.join(map(str, paths))}", "",
             f"Compared: {legend}; mean ± sample sd (n - 1) over {over} at the last round (– : one run; "
             "a cell is empty where the metric does not apply to the arm).", "",
             "![sweep](sweep.png)", "", *arm_table(rows, cols)]
    gains = [(label, n, last["accuracy gain vs M1 (testbed)"]) for label, n, last in rows]
    if gains and all(g for _, _, g in gains):
        lines += ["", "Held-out greedy accuracy gain over M1 (checked by the program), mean ± sample sd (n - 1):"]
        lines += [f"- {label}: {100 * g[1]:+.1f} ± {_fmt(None if g[2] is None else 100 * g[2], '.1f')} points "
                  f"after round {g[0]} ({n} run{'s' * (n != 1)})" for label, n, g in gains]
    if constraint:
        lines += ["", "M1 before any round, the same columns, for each M1 and the judge it is measured with (a sweep "
                      "trains one M1 for the arms whose init settings agree; its sampled metrics follow the run "
                      "seed):", "", *m1_table(groups, dirs, cols)]
        lines += ["", *type_table(dirs)]
    if testbed:
        pick = "the judge's pick" if constraint else "the better of the judge's pick and the vote among N"
        lines += ["", "Held-out greedy accuracy per run (round 0 = M1), and each round's generation-verification "
                      f"gap on its own candidates ({pick}, minus sampled accuracy):", "", *seed_table(seeds)]
        lines += ["", "The DPO arms' training pairs by the checker's verdict on each side, pooled over the arm's "
                      "rounds and runs (the shares add up to 1):", "", *pair_table(dirs)]
    failed = [r["name"] for r in runs if r["status"].startswith("failed")]
    if failed:
        lines += ["", f"Failed runs (not in the table): {', '.join(failed)}."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_heldout_versions(groups: dict[str, list[list[dict]]]) -> None:
    """Numbers measured on different held-out sets are never compared."""
    versions = {m.get("eval", {}).get("testbed_heldout_version") for arm in groups.values() for rounds in arm
                for m in rounds} - {None}
    if len(versions) > 1:
        raise ConfigError(f"these runs were evaluated on different held-out sets (testbed.heldout_version "
                          f"{sorted(versions)}): report each version apart, never side by side.")


def _cell(value: tuple | None, spec: str = ".3f") -> str:
    """'mean ± sd' of one arm's last point; '' where the arm has no value (the metric does not apply)."""
    if not value:
        return ""
    return f"{format(value[1], spec)} ± {_fmt(value[2], spec)}"


def arm_table(rows: list[tuple[str, int, dict]], cols: list[str]) -> list[str]:
    """One line per arm: its settings, the number of runs, each column's mean ± sd at the last round."""
    out = ["| setting | runs | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    for label, n, last in rows:
        cells = [_cell(last[c], ".1f" if CURVE[c].kind in ("count", "length") else ".3f") for c in cols]
        out.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return out


def m1_table(groups: dict[str, list[list[dict]]], dirs: dict[str, list[Path]], cols: list[str]) -> list[str]:
    """M1's value of each column that has one (read from round 1's metrics), mean ± sd over the runs
    that start from the same M1 and measure its judging the same way: one row for a sweep whose arms
    share M1 and judge alike, one more for an arm with its own M1 or its own judge."""
    first_round = {d: rounds[0] for label, arm in groups.items() for rounds, d in zip(arm, dirs[label])}
    pooled = m1_groups(dirs, key=lambda d: (m1_of(d), describe_judge(load_frozen(d).judge)))
    rows = {(described, labels): [first_round[d] for d in runs] for ((_, described), labels), runs in pooled.items()}
    values = {c: [[v for m in firsts if (v := CURVE[c].m1(m)) is not None] for firsts in rows.values()]
              for c in cols if CURVE[c].m1 and (CURVE[c].kind != "delta" or c == "gap, held-out (testbed)")}
    values = {c: per_row for c, per_row in values.items() if any(per_row)}
    out = ["| M1 of | its judge | runs | " + " | ".join(values) + " |", "|" + " --- |" * (len(values) + 3)]
    for i, ((described, labels), firsts) in enumerate(rows.items()):
        cells = [_cell((0, mean(v[i]), sample_sd(v[i])), ".1f" if CURVE[c].kind == "length" else ".3f")
                 if v[i] else "" for c, v in values.items()]
        out.append(f"| {', '.join(labels)} | {described} | {len(firsts)} | " + " | ".join(cells) + " |")
    return out


def seed_table(seeds: dict[str, list[tuple[str, list[dict]]]]) -> list[str]:
    greedy, gap = CURVE["held-out accuracy, greedy (testbed)"], CURVE["generation-verification gap (testbed)"]
    last = max(len(rounds) for runs in seeds.values() for _, rounds in runs)
    out = ["| setting | seed | M1 | " + " | ".join(f"round {t}" for t in range(1, last + 1)) + " | gap per round |",
           "|" + " --- |" * (last + 4)]
    for label, runs in seeds.items():
        for seed, rounds in runs:
            acc = dict(points(greedy, rounds))
            gaps = ", ".join(f"{v:+.2f}" for _, v in points(gap, rounds))
            out.append(f"| {label} | {seed} | " + " | ".join(_fmt(acc.get(t), ".3f") for t in range(last + 1))
                       + f" | {gaps} |")
    return out


def report(paths: list[str], out: str | None = None, html: bool = False, max_prompts: int = 50) -> Path:
    """Write the report of one run, or of sweeps, into `out` (default: the one directory given, when
    it is writable: a finished run on a read-only disk is reported elsewhere with --out)."""
    roots = [Path(p) for p in paths]
    if out is None:
        if len(roots) > 1:
            raise ConfigError("a report on several directories needs --out <dir> (where to write it).")
        if not os.access(roots[0], os.W_OK):
            raise ConfigError(f"{roots[0]} is not writable: give --out <dir> to write the report there.")
    target = Path(out) if out else roots[0]
    target.mkdir(parents=True, exist_ok=True)
    single = len(roots) == 1 and (roots[0] / "config.yaml").is_file()
    if html:
        if not single:
            raise ConfigError("--html takes one run directory (the page shows its rounds).")
        report_run(roots[0], target)
        return write_html(roots[0], target, max_prompts)
    return report_run(roots[0], target) if single else report_sweep(roots, target)
