"""`selfreward report <run_dir or sweep_dir>`: report.md and PNG plots, readable in a minute.

For one run: per round, the judge's pairwise accuracy on held-out EFT, the win rate of M_{t+1} vs M_t
and vs M1, the self-judge's score histogram, pair counts and chosen/rejected lengths. For a sweep:
every swept setting but the seed side by side, mean ± sample standard deviation (n - 1) over seeds,
per round.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# (title, how to read it from a round's metrics.json)
CURVES = {
    "win rate vs M1": lambda m: m.get("eval", {}).get("win_rate_vs_initial"),
    "win rate vs previous": lambda m: m.get("eval", {}).get("win_rate_vs_previous"),
    "judge pairwise accuracy (M_t)": lambda m: m.get("eval", {}).get("judge_pairwise_accuracy"),
    "training examples (pairs / SFT)": lambda m: m["counts"].get("pairs", m["counts"].get("sft_examples")),
    "chosen length (tokens)": lambda m: m["lengths_tokens"].get("chosen", m["lengths_tokens"].get("selected")),
    "rejected length (tokens)": lambda m: m["lengths_tokens"].get("rejected"),
    "all candidates length (tokens)": lambda m: m["lengths_tokens"]["all"],
    # recipe=testbed: the truth, for M_{t+1} (round 0 = M1)
    "held-out accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_accuracy"),
    "sampled accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_sampled_accuracy"),
    "majority accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_majority_accuracy"),
    "judge accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_judge_accuracy"),
    "accuracy gain vs M1 (testbed)": lambda m: m.get("eval", {}).get("testbed_accuracy_gain"),
    "chosen correct (testbed)": lambda m: m.get("eval", {}).get("testbed_pair_precision"),
    "judge on own candidates (testbed)": lambda m: m.get("eval", {}).get("testbed_judge_own_pairwise_accuracy"),
    "generation-verification gap (testbed)": lambda m: m.get("eval", {}).get("testbed_generation_verification_gap"),
}
# Curves that also have a point for M1 (round 0), read from round 1's metrics.
AT_M1 = {
    "held-out accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_m1_accuracy"),
    "sampled accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_m1_sampled_accuracy"),
    "majority accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_m1_majority_accuracy"),
    "judge accuracy (testbed)": lambda m: m.get("eval", {}).get("testbed_m1_judge_accuracy"),
}


def sample_sd(values: list[float]) -> float | None:
    """The sample standard deviation (n - 1), as a reader of "mean ± sd" expects; None for one value."""
    return stdev(values) if len(values) > 1 else None


def load_rounds(run_dir: Path) -> list[dict]:
    paths = sorted(run_dir.glob("round_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    return [json.loads(p.read_text()) for p in paths]


def points(name: str, rounds: list[dict]) -> list[tuple[int, float]]:
    """(round, value) of one curve over a run's rounds; (0, M1's value) first where there is one."""
    get = CURVES[name]
    out = [(m["round"], get(m)) for m in rounds if get(m) is not None]
    m1 = AT_M1[name](rounds[0]) if name in AT_M1 and rounds and rounds[0]["round"] == 1 else None
    return [(0, m1), *out] if m1 is not None else out


def _fmt(v, spec=".2f") -> str:
    return "–" if v is None else format(v, spec)


def _plot_curves(series: dict[str, dict[str, list]], path: Path, title: str) -> None:
    """series: curve title -> {label: [(round, mean, sd)]}: one panel per curve, one line per label."""
    names = [n for n in CURVES if any(points for points in series[n].values())]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        for label, points in series[name].items():
            if points:
                xs, ys, sds = zip(*points)
                ax.errorbar(xs, ys, yerr=[sd or 0.0 for sd in sds], marker="o", capsize=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round")
        if "rate" in name or "accuracy" in name:
            ax.set_ylim(-0.05, 1.05)
        ax.set_xticks(sorted({x for points in series[name].values() for x, _, _ in points}))
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_histograms(rounds: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.8 / max(len(rounds), 1)
    for i, m in enumerate(rounds):
        hist = {int(k): v for k, v in m["judge"]["score_histogram"].items()}
        total = sum(hist.values()) or 1
        ax.bar([s + i * width for s in hist], [v / total for v in hist.values()], width, label=f"round {m['round']}")
    ax.set_xlabel("self-judge score")
    ax.set_ylabel("share of judgments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report_run(run_dir: Path) -> Path:
    rounds = load_rounds(run_dir)
    if not rounds:
        raise FileNotFoundError(f"{run_dir} has no finished round (round_*/metrics.json)")
    series = {name: {"run": [(t, v, 0.0) for t, v in points(name, rounds)]} for name in CURVES}
    _plot_curves(series, run_dir / "rounds.png", str(run_dir))
    _plot_histograms(rounds, run_dir / "scores.png")
    lines = [f"# selfreward report: {run_dir}", "", "![per round](rounds.png)", "", "![scores](scores.png)", "",
             "| round | prompts | train on | unparsed judgments | mode share | judge acc | win vs prev | win vs M1 "
             "| len chosen | len rejected | loss |", "|" + " --- |" * 11]
    for m in rounds:
        c, ev = m["counts"], m.get("eval", {})
        lines.append(
            f"| {m['round']} | {c['prompts']} | {CURVES['training examples (pairs / SFT)'](m)} "
            f"| {_fmt(m['judge']['judgment_parse_failure_rate'], '.1%')} | {_fmt(m['judge']['mode_share'])} "
            f"| {_fmt(ev.get('judge_pairwise_accuracy'))} | {_fmt(ev.get('win_rate_vs_previous'))} "
            f"| {_fmt(ev.get('win_rate_vs_initial'))} | {_fmt(CURVES['chosen length (tokens)'](m), '.1f')} "
            f"| {_fmt(m['lengths_tokens'].get('rejected'), '.1f')} | {_fmt(m['training'].get('train_loss'), '.4f')} |"
        )
    accuracy = points("held-out accuracy (testbed)", rounds)
    if accuracy:
        judge = dict(points("judge accuracy (testbed)", rounds))
        lines += ["", "Testbed, checked by the program (model M_{t+1} after round t; round 0 = M1):", "",
                  "| after round | held-out accuracy | judge accuracy |", "| --- | --- | --- |"]
        lines += [f"| {t} | {_fmt(v)} | {_fmt(judge.get(t))} |" for t, v in accuracy]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def report_sweep(sweep_dir: Path) -> Path:
    info = json.loads((sweep_dir / "sweep.json").read_text())
    compared = [k for k in info["swept"] if k != "seed"] or info["swept"]
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    for run in info["runs"]:
        rounds = load_rounds(Path(run["run_dir"]))
        if rounds:
            groups[",".join(f"{k}={run['overrides'][k]}" for k in compared)].append(rounds)
    series = {name: {} for name in CURVES}
    rows = []
    for label, runs in groups.items():
        for name in CURVES:
            by_round = defaultdict(list)
            for rounds in runs:
                for t, v in points(name, rounds):
                    by_round[t].append(v)
            series[name][label] = [(t, mean(v), sample_sd(v)) for t, v in sorted(by_round.items())]
        last = {name: series[name][label][-1] if series[name][label] else None for name in CURVES}
        rows.append((label, len(runs), last))
    _plot_curves(series, sweep_dir / "sweep.png", f"{sweep_dir}: mean ± sample sd over seeds")
    cols = ["win rate vs M1", "win rate vs previous", "judge pairwise accuracy (M_t)",
            "training examples (pairs / SFT)", "chosen length (tokens)"]
    if any(last["accuracy gain vs M1 (testbed)"] for _, _, last in rows):
        cols = ["accuracy gain vs M1 (testbed)", "held-out accuracy (testbed)", "sampled accuracy (testbed)",
                "majority accuracy (testbed)", "judge accuracy (testbed)", "judge on own candidates (testbed)",
                "chosen correct (testbed)", "training examples (pairs / SFT)"]
    over = ", ".join(sorted(set(info["swept"]) - set(compared))) or "runs"
    lines = [f"# selfreward sweep report: {sweep_dir}", "",
             f"Compared: {', '.join(compared)}; mean ± sample sd (n - 1) over {over} at the last round.", "",
             "![sweep](sweep.png)", "",
             "| setting | runs | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    for label, n, last in rows:
        cells = [f"{_fmt(last[c][1])} ± {_fmt(last[c][2])}" if last[c] else "–" for c in cols]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    gains = [(label, n, last["accuracy gain vs M1 (testbed)"]) for label, n, last in rows]
    if all(g for _, _, g in gains) and gains:
        lines += ["", "Held-out accuracy gain over M1 (checked by the program), mean ± sample sd (n - 1) over seeds:"]
        lines += [f"- {label}: {100 * g[1]:+.1f} ± {_fmt(None if g[2] is None else 100 * g[2], '.1f')} points "
                  f"after round {g[0]} ({n} runs)" for label, n, g in gains]
    failed = [r["name"] for r in info["runs"] if r["status"].startswith("failed")]
    if failed:
        lines += ["", f"Failed runs (not in the table): {', '.join(failed)}."]
    path = sweep_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def report(path: str) -> Path:
    root = Path(path)
    if (root / "sweep.json").is_file():
        return report_sweep(root)
    if (root / "config.yaml").is_file():
        return report_run(root)
    raise FileNotFoundError(f"{root} is neither a run directory (config.yaml) nor a sweep (sweep.json)")
