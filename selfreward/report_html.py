"""`selfreward report <run_dir> --html`: report.html, a static page to read what the judge chose.

Self-contained: CSS and plots inlined, no script, no server, no network. Per round it shows the
evaluation's numbers, the prompt and pair filter counts, the score histogram and length against score,
the pairs with their scores and the difference between the two texts, and the prompts the model
wrote, each with its candidates sorted by score and every judgment's text. On the testbed each
candidate is marked right or wrong by the program. A round of 20,000 prompts stays a page a browser
opens: it shows a seeded sample of `max_prompts` prompts and pairs, and says how many there are.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import random
from pathlib import Path

import matplotlib.pyplot as plt

from selfreward import testbed
from selfreward.config import load_frozen
from selfreward.files import read_jsonl
from selfreward.round import StageName
from selfreward.rundir import RunDir

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .25em .5em;
vertical-align: top; text-align: left; } th { background: #f4f4f4; }
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12.5px; }
.score { font-variant-numeric: tabular-nums; white-space: nowrap; }
.right { color: #176f2c; font-weight: bold; } .wrong { color: #b3261e; font-weight: bold; }
del { background: #fde2e1; text-decoration: none; } ins { background: #dcf5df; text-decoration: none; }
details { margin: .3em 0; } summary { cursor: pointer; } .note { color: #666; }
img { max-width: 100%; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _inline(path: Path) -> str:
    return f'<img alt="{path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _e(text) -> str:
    return html.escape(str(text))


def _table(rows: list[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(_short(v))}</td></tr>" for k, v in rows) + "</table>"


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def _diff(chosen: str, rejected: str) -> str:
    """The two texts word by word: what only the rejected has struck, what only the chosen has added."""
    a, b = rejected.split(), chosen.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(f"<del>{_e(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{_e(' '.join(b[j1:j2]))}</ins>")
        if op == "equal":
            out.append(_e(" ".join(a[i1:i2])))
    return " ".join(out)


def _truth(check, prompt: str, response: str) -> str:
    if check is None:
        return ""
    ok = check(prompt, response)
    return "" if ok is None else ('<span class="right">✓ right</span>' if ok else '<span class="wrong">✗ wrong</span>')


def _scatter(candidates: list[dict], scores: dict) -> str:
    xs = [len(c["response"]) for c in candidates if scores.get((c["prompt_id"], c["candidate_id"])) is not None]
    ys = [s for c in candidates if (s := scores.get((c["prompt_id"], c["candidate_id"]))) is not None]
    if not xs:
        return '<p class="note">No scored candidates (this variant ranks without a judge).</p>'
    fig, ax = plt.subplots(figsize=(4.8, 3))
    ax.scatter(xs, ys, s=8, alpha=0.4)
    ax.set_xlabel("response length (characters)")
    ax.set_ylabel("score")
    ax.set_xlim(left=0)
    fig.tight_layout()
    return _png(fig)


def _round(rd: RunDir, cfg, t: int, max_prompts: int, check) -> str:
    folder = rd.round_dir(t)
    manifest = rd.manifest(t)
    candidates = read_jsonl(rd.output(t, StageName.candidates)) if rd.output(t, StageName.candidates).is_file() else []
    judged = read_jsonl(rd.output(t, StageName.judge)) if rd.output(t, StageName.judge).is_file() else []
    by_candidate = {(j["prompt_id"], j["candidate_id"]): j for j in judged}
    scores = {k: j["score"] for k, j in by_candidate.items()}
    prompts = read_jsonl(rd.output(t, StageName.prompts)) if rd.output(t, StageName.prompts).is_file() else []
    data = rd.training_data(cfg, t)
    training = read_jsonl(data) if data.is_file() else []
    parts = [f'<h2 id="round-{t}">Round {t}</h2>']
    ev = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else {}
    numbers = [(f"judge: {k}", v) for k, v in ev.get("judge", {}).items() if isinstance(v, (int, float))]
    numbers += [(f"win rate {k} (decided/n)", f"{_short(v['win_rate']) if v['win_rate'] is not None else '–'} "
                                            f"({v.get('decided', '?')}/{v['n']})")
                for k, v in ev.get("policy", {}).items() if isinstance(v, dict)]
    numbers += [(f"testbed: {k}", v) for k, v in ev.get("testbed", {}).items() if isinstance(v, (int, float))]
    parts.append("<h3>Evaluation</h3>" + (_table(numbers) if numbers else '<p class="note">Not evaluated.</p>'))
    counts = [(f"prompts: {k}", v) for k, v in manifest.get(StageName.prompts, {}).items()
              if k.startswith(("dropped_", "kept", "requested"))]
    counts += [(f"training data: {k}", v) for k, v in manifest.get(StageName.pairs, {}).items()
               if k.startswith("dropped_") or k == "records"]
    parts.append("<h3>Filters</h3>" + _table(counts))
    parts.append("<h3>Scores</h3>" + _scatter(candidates, scores))
    kind = "pairs" if cfg.update.method.value == "dpo" else "SFT examples"
    shown = sorted(random.Random(t).sample(range(len(training)), min(max_prompts, len(training))))
    parts.append(f"<h3>Training data: {len(training)} {kind}</h3>"
                 f'<p class="note">Showing {len(shown)} of {len(training)}.</p>')
    rows = []
    for i in shown:
        r = training[i]
        if "chosen" in r:
            flipped = " (trained flipped)" if r.get("flipped") else ""
            rows.append(f"<tr><td class='text'>{_e(r['prompt'])}</td><td class='text'>{_e(r['chosen'])} "
                        f"{_truth(check, r['prompt'], r['chosen'])}</td><td class='text'>{_e(r['rejected'])} "
                        f"{_truth(check, r['prompt'], r['rejected'])}</td><td class='score'>"
                        f"{_e(round(r['score_chosen'], 3))} vs {_e(round(r['score_rejected'], 3))}{flipped}</td>"
                        f"<td class='text'>{_diff(r['chosen'], r['rejected'])}</td></tr>")
        else:
            rows.append(f"<tr><td class='text'>{_e(r['prompt'])}</td><td class='text'>{_e(r['response'])} "
                        f"{_truth(check, r['prompt'], r['response'])}</td><td></td>"
                        f"<td class='score'>{_e(round(r['score'], 3))}</td><td></td></tr>")
    if rows:
        parts.append("<table><tr><th>prompt</th><th>chosen</th><th>rejected</th><th>scores</th>"
                     "<th>difference (rejected → chosen)</th></tr>" + "".join(rows) + "</table>")
    sample = sorted(random.Random(t + 1).sample(range(len(prompts)), min(max_prompts, len(prompts))))
    parts.append(f"<h3>Prompts the model wrote: {len(prompts)}</h3>"
                 f'<p class="note">Showing {len(sample)} of {len(prompts)}, each with its candidates, best '
                 "score first.</p>")
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
    for i in sample:
        p = prompts[i]
        cands = sorted(by_prompt.get(p["id"], []), key=lambda c: -(scores.get((p["id"], c["candidate_id"])) or -1e9))
        items = []
        for c in cands:
            j = by_candidate.get((p["id"], c["candidate_id"]), {})
            judgments = "".join(f"<li class='text'>{_e(text)}</li>" for text in j.get("judgments", []))
            items.append(f"<li><span class='score'>score {_e(_round_or_dash(j.get('score')))}</span> "
                         f"{_truth(check, p['prompt'], c['response'])}<div class='text'>{_e(c['response'])}</div>"
                         + (f"<details><summary>judgments</summary><ol>{judgments}</ol></details>" if judgments
                            else "") + "</li>")
        source = " (seed task)" if p.get("source") == "seed" else ""
        parts.append(f"<details><summary class='text'>{_e(p['prompt'])}{source}</summary><ol>{''.join(items)}"
                     "</ol></details>")
    return "\n".join(parts)


def _round_or_dash(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_html(run_dir: Path, out: Path, max_prompts: int = 50) -> Path:
    rd, cfg = RunDir(run_dir), load_frozen(run_dir)
    check = None
    if cfg.testbed.enabled:
        check = testbed.check
    rounds = rd.rounds()
    settings = [("update", cfg.update.method.value), ("judge", cfg.judge.method.value),
                ("variant", cfg.variant.name), ("rounds", len(rounds))]
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>selfreward: {_e(run_dir.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>selfreward report: {_e(run_dir)}</h1>" + _table(settings)
            + "<p>" + " · ".join(f'<a href="#round-{t}">round {t}</a>' for t in rounds) + "</p>")
    plots = "".join(_inline(out / name) for name in ("rounds.png", "scores.png") if (out / name).is_file())
    body = "\n".join(_round(rd, cfg, t, max_prompts, check) for t in rounds)
    path = out / "report.html"
    path.write_text(head + plots + body + "</body></html>\n", encoding="utf-8")
    return path
