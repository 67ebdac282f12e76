"""`selfreward export`: a round's model answers a user-supplied question file in the formats that
AlpacaEval and MT-Bench (FastChat llm_judge) read, so rounds can be scored with those benchmarks on
the user's own machine.

    selfreward export runs/tiny --round 2 --questions alpaca_eval.json --format alpaca_eval --out m3.json
    selfreward export runs/tiny --round 0 --questions question.jsonl --format mt_bench --out m1.jsonl

`--round 0` is M1; `--round t` is the model round t trained (M_{t+1}).
Input: alpaca_eval, a JSON list (or JSONL) of {"instruction", "dataset"?}; mt_bench, JSONL of
{"question_id", "category", "turns": [...]}, answered turn by turn with the earlier turns in context.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from selfreward.config import load_frozen
from selfreward.errors import ConfigError
from selfreward.files import atomic_write_text
from selfreward.generation import load_generator
from selfreward.generation.base import Sampling
from selfreward.rundir import RunDir
from selfreward.templates import chat_prompt, render_chat


def read_questions(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON or JSONL ({e})") from None


def export(run_dir: str, t: int, questions: str, fmt: str, out: str, max_new_tokens: int = 1024) -> Path:
    cfg, rd = load_frozen(run_dir), RunDir(run_dir)
    model = rd.model(t) if t else Path(rd.initial(cfg))
    if not Path(model).is_dir():
        raise ConfigError(f"no model for round {t} at {model}")
    rows = read_questions(Path(questions))
    name = f"{Path(run_dir).name}-M{t + 1}"
    gen = load_generator(cfg, str(model))
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    if fmt == "alpaca_eval":
        if any("instruction" not in r for r in rows):
            raise ConfigError(f"{questions}: every alpaca_eval record needs an 'instruction'")
        prompts = [chat_prompt(gen.tokenizer, r["instruction"]) for r in rows]
        outputs = [o[0] for o in gen.generate(prompts, greedy, desc="alpaca_eval")]
        records = [{"instruction": r["instruction"], "output": o, "generator": name,
                    **({"dataset": r["dataset"]} if "dataset" in r else {})} for r, o in zip(rows, outputs)]
        text = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "mt_bench":
        if any("turns" not in r or "question_id" not in r for r in rows):
            raise ConfigError(f"{questions}: every mt_bench record needs 'question_id' and 'turns'")
        histories: list[list[dict]] = [[] for _ in rows]
        answers: list[list[str]] = [[] for _ in rows]
        for turn in range(max(len(r["turns"]) for r in rows)):
            todo = [i for i, r in enumerate(rows) if turn < len(r["turns"])]
            for i in todo:
                histories[i].append({"role": "user", "content": rows[i]["turns"][turn]})
            prompts = [render_chat(gen.tokenizer, histories[i]) for i in todo]
            outs = gen.generate(prompts, greedy, desc=f"mt_bench turn {turn + 1}")
            for i, (o,) in zip(todo, outs):
                histories[i].append({"role": "assistant", "content": o})
                answers[i].append(o)
        records = [{"question_id": r["question_id"], "answer_id": uuid.uuid4().hex, "model_id": name,
                    "choices": [{"index": 0, "turns": a}], "tstamp": time.time()} for r, a in zip(rows, answers)]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        raise ConfigError(f"Unknown export format {fmt!r}. Valid choices: alpaca_eval, mt_bench.")
    atomic_write_text(Path(out), text)
    return Path(out)
