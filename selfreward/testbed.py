"""The ground-truth testbed (`recipe=testbed`): string tasks a program can check, small enough that a
~1M-parameter model learns to answer and to judge them in CPU minutes.

    reverse cabd -> dbac        sort cabd -> abcd        count a in abca -> 2        add 17 25 -> 42
    pair 3 8 5 1 sum 9 -> 8 1   (a pair of the list, in list order, that sums to the target)

`pair` is the family where checking is easier than producing: finding the pair is a search over
the list, checking a proposed one is two look-ups and one addition.

`write` puts the run's data into `<run_dir>/testbed/` (`attach` points the config at it):
- `ift.jsonl`: task instances with correct answers, plus self-instruct demonstrations (`kind:
  self_instruct`: the prompts template with k seed tasks -> one new task), so M1 can write prompts;
- `eft.jsonl`: instances with a correct or a corrupted answer and the judgment in the recipe's judge
  format ("Score: <max_score>" or "Score: 0"); with `judge.reasoning=true` the judgment first works
  the check out ("sort: abcd; given abcd: same. Score: 1", "8+5=13 vs 9: differs. Score: 0");
- `heldout_prompts.jsonl`, `heldout_eft.jsonl`: a fixed held-out set (`testbed.heldout_seed`, the same
  for every run seed), disjoint from the training instances.

The checker is used only by `metrics` and `candidate_stats` (evaluation) and, for the parse alone, by
`why_not_a_task` (the prompts stage drops tasks it cannot parse, that lie outside the configured
family, or that share a held-out instance's canonical key): no correctness signal reaches training
except through the model's own judgments.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from selfreward import constraints, testbed_constraints
from selfreward.errors import ConfigError
from selfreward.files import atomic_write_text, read_jsonl, write_jsonl
from selfreward.judge import register, scored
from selfreward.prompts import instruction_request
from selfreward.rundir import RunDir
from selfreward.schema import Config, JudgeConfig, JudgeMethod, TestbedConfig, TestbedFamily
from selfreward.templates import Template

WORD = r"([a-z]{1,12})"
NUMBER = r"(\d{1,3})"


@dataclass(frozen=True)
class Task:
    pattern: re.Pattern
    solve: Callable[..., str | None]  # None: an ill-posed instance (a list with no single pair)
    sample: Callable[[random.Random, TestbedConfig], tuple]  # the arguments of a new instance
    render: str  # instruction format, filled with the arguments
    # Instances with equal keys teach the same answer: `sort cab` and `sort bca` are both "abc". The
    # held-out set is disjoint from training (and from self-written prompts) by this key.
    key: Callable[..., tuple]
    # Whether an instance lies in the configured family (cfg, arguments): alphabet, lengths, numbers.
    fits: Callable[..., bool]
    # How a judge that works its check out writes it, for (arguments, response): the default redoes
    # the task and compares; `pair` verifies the proposed pair instead.
    explain: Callable[..., str] | None = None
    # A plausible wrong answer (arguments, rng, correct answer); None: `corrupt`.
    wrong: Callable[..., str] | None = None
    # Whether a response is right (arguments, response); None: it equals `solve`'s answer.
    accepts: Callable[..., bool] | None = None


def _word(rng: random.Random, cfg: TestbedConfig) -> str:
    return "".join(rng.choice(cfg.alphabet) for _ in range(rng.randint(cfg.min_len, cfg.max_len)))


def _fits_word(cfg: TestbedConfig, word: str) -> bool:
    return set(word) <= set(cfg.alphabet) and cfg.min_len <= len(word) <= cfg.max_len


def _pairs(numbers: str, target: str) -> list[tuple[int, int]]:
    xs = [int(x) for x in numbers.split()]
    return [(i, j) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[i] + xs[j] == int(target)]


def _solve_pair(numbers: str, target: str) -> str | None:
    """The first pair of the list (in list order) summing to the target; None when none does."""
    found, xs = _pairs(numbers, target), numbers.split()
    return f"{xs[found[0][0]]} {xs[found[0][1]]}" if found else None


def _accepts_pair(numbers: str, target: str, response: str) -> bool:
    """Any two numbers of the list, in either order, that sum to the target (a self-written list may
    have several such pairs)."""
    xs, got = numbers.split(), response.split()
    return sorted(got) in [sorted((xs[i], xs[j])) for i, j in _pairs(numbers, target)]


def _sample_pair(rng: random.Random, cfg: TestbedConfig) -> tuple[str, str]:
    """Digits 0-9, a list of min_len..max_len (at least 3), with exactly one pair summing to the target."""
    while True:
        xs = [rng.randint(0, 9) for _ in range(rng.randint(max(cfg.min_len, 3), cfg.max_len))]
        i, j = rng.sample(range(len(xs)), 2)
        numbers, target = " ".join(map(str, xs)), str(xs[i] + xs[j])
        if len(_pairs(numbers, target)) == 1:
            return numbers, target


def _explain_pair(numbers: str, target: str, response: str) -> str:
    """The check a verifier writes: the proposed pair's sum set beside the target. (Whether both numbers
    are in the list is left out: at this model size the look-ups made the judge worse, not better.)"""
    got = response.split()
    if len(got) != 2 or not all(g.isdigit() for g in got):
        return "not two numbers"
    total = int(got[0]) + int(got[1])
    return f"{got[0]}+{got[1]}={total} vs {target}: {'same' if total == int(target) else 'differs'}"


def _wrong_pair_v1(numbers: str, target: str, rng: random.Random, answer: str) -> str:
    """The model's own kinds of mistake: another pair of the list, or a number that is not in it; both
    with a sum other than the target, so the sum check tells them from the answer."""
    xs = numbers.split()
    others = [(i, j) for i in range(len(xs)) for j in range(i + 1, len(xs))
              if int(xs[i]) + int(xs[j]) != int(target)]
    if others and rng.random() < 0.5:
        i, j = rng.choice(others)
        return f"{xs[i]} {xs[j]}"
    a, b = answer.split()
    k = rng.randrange(2)
    kept = int((b, a)[k])
    outside = [d for d in "0123456789" if d not in xs and int(d) + kept != int(target)] or ["0"]
    new = rng.choice(outside)
    return f"{new} {b}" if k == 0 else f"{a} {new}"


TASKS = {
    "reverse": Task(re.compile(rf"reverse {WORD}"), lambda w: w[::-1], lambda r, c: (_word(r, c),), "reverse {}",
                    lambda w: (w,), _fits_word),
    "sort": Task(re.compile(rf"sort {WORD}"), lambda w: "".join(sorted(w)), lambda r, c: (_word(r, c),), "sort {}",
                 lambda w: tuple(sorted(w)), _fits_word),
    "count": Task(re.compile(rf"count ([a-z]) in {WORD}"), lambda ch, w: str(w.count(ch)),
                  lambda r, c: (r.choice(c.alphabet), _word(r, c)), "count {} in {}",
                  lambda ch, w: (ch, *sorted(w)), lambda c, ch, w: ch in c.alphabet and _fits_word(c, w)),
    "add": Task(re.compile(rf"add {NUMBER} {NUMBER}"), lambda a, b: str(int(a) + int(b)),
                lambda r, c: (r.randint(0, c.max_number), r.randint(0, c.max_number)), "add {} {}",
                lambda a, b: tuple(sorted((int(a), int(b)))), lambda c, a, b: max(int(a), int(b)) <= c.max_number),
    "pair": Task(re.compile(r"pair ((?:\d )+\d) sum (\d{1,2})"), _solve_pair, _sample_pair, "pair {} sum {}",
                 lambda numbers, target: (*sorted(numbers.split()), target),
                 lambda c, numbers, target: max(c.min_len, 3) <= len(numbers.split()) <= c.max_len,
                 _explain_pair, _wrong_pair_v1, _accepts_pair),
}


def _match(instruction: str) -> tuple[str, re.Match] | None:
    text = instruction.strip()
    for name, task in TASKS.items():
        m = task.pattern.fullmatch(text)
        if m:
            return name, m
    return None


def parse(instruction: str) -> tuple[str, str] | None:
    """(task name, correct answer) of an instruction, or None when no task's format matches it exactly
    or it has no single answer (a `pair` list with no pair, or several, summing to the target)."""
    found = _match(instruction)
    answer = TASKS[found[0]].solve(*found[1].groups()) if found else None
    return (found[0], answer) if answer is not None else None


def key(instruction: str) -> tuple | None:
    """The canonical key of an instruction (see `Task.key`), or None when it does not parse."""
    found = _match(instruction)
    return (found[0], *TASKS[found[0]].key(*found[1].groups())) if found else None


def why_not_a_task(instruction: str, cfg: TestbedConfig, heldout: frozenset = frozenset()) -> str | None:
    """Why a self-written prompt is not a training instance of this testbed's tasks (None when it is):
    it does not parse, its task, letters, word length or numbers lie outside the configured family,
    or it has the canonical key of a held-out instance (`heldout`)."""
    found = _match(instruction) if parse(instruction) else None
    if found is None:
        return "unparseable"
    name, m = found
    if name not in cfg.tasks or not TASKS[name].fits(cfg, *m.groups()):
        return "out_of_range"
    return "heldout" if key(instruction) in heldout else None


def task_name(instruction: str) -> str:
    """The string task or the constraint type of a testbed instruction."""
    parsed = parse(instruction)
    if parsed is None:
        return constraints.parse(instruction)[0].name
    return parsed[0]


def task_filter(cfg: Config, rd: RunDir) -> Callable[[str], str | None]:
    """The prompts stage's filter for self-written tasks, against this run's held-out set."""
    if cfg.testbed.family is TestbedFamily.constraints:
        return testbed_constraints.why_not_a_prompt

    heldout = frozenset(key(p["prompt"]) for p in read_jsonl(rd.testbed_files["heldout_prompts"]))
    return lambda instruction: why_not_a_task(instruction, cfg.testbed, heldout)


@register(JudgeMethod.oracle)
def oracle_judge(generator: None, cfg: JudgeConfig, candidates: list[dict], seed: int) -> list[dict]:
    """judge.method=oracle, the ceiling: the checker's verdict as the score (no model)."""
    return scored(cfg, [cfg.max_score if check(c["prompt"], c["response"]) else 0 for c in candidates])


def check(instruction: str, response: str) -> bool | None:
    """Whether `response` answers `instruction` correctly: a string task, or a prompt with an
    instruction-following constraint (`selfreward.constraints`); None: neither."""
    parsed = parse(instruction)
    if parsed is None:
        return constraints.check(instruction, response)
    task = TASKS[parsed[0]]
    if task.accepts:
        return task.accepts(*_match(instruction)[1].groups(), response)
    return response.strip() == parsed[1]


def corrupt_v1(rng: random.Random, answer: str, task: str = "") -> str:
    """A plausible wrong answer, of the kinds the model's own samples show: a number a little off; two
    letters swapped, one dropped or doubled, or one replaced by another letter of the answer (same
    length, same letters: the mistakes a length or alphabet check cannot catch). For `sort` the
    result is sorted again, as the model's own wrong sorts are."""
    while True:
        if answer.isdigit():
            wrong = str(max(0, int(answer) + rng.choice((-10, -2, -1, 1, 2, 10))))
        else:
            i, j = rng.randrange(len(answer)), rng.randrange(len(answer))
            kind = rng.choice(("swap", "drop", "double", "replace", "replace"))
            if kind == "swap":
                chars = list(answer)
                chars[i], chars[j] = chars[j], chars[i]
                wrong = "".join(chars)
            elif kind == "drop" and len(answer) > 1:
                wrong = answer[:i] + answer[i + 1 :]
            elif kind == "double":
                wrong = answer[: i + 1] + answer[i:]
            else:
                wrong = answer[:i] + answer[j] + answer[i + 1 :]
            if task == "sort":
                wrong = "".join(sorted(wrong))
        if wrong != answer:
            return wrong


def instances(cfg: TestbedConfig, rng: random.Random, n: int, exclude: frozenset = frozenset()) -> list[dict]:
    """`n` distinct instances, the tasks taking turns, none whose canonical key is in `exclude`."""
    out, seen = [], set()
    for _ in range(50 * n + 1000):
        if len(out) == n:
            return out
        name = cfg.tasks[len(out) % len(cfg.tasks)]
        task = TASKS[name]
        args = task.sample(rng, cfg)
        instruction = task.render.format(*args)
        if instruction not in seen and (name, *task.key(*args)) not in exclude:
            seen.add(instruction)
            out.append({"task": name, "instruction": instruction, "answer": task.solve(*args)})
    raise ConfigError(f"The testbed cannot draw {n} distinct task instances from 'testbed.alphabet' "
                      f"{cfg.alphabet!r}, lengths {cfg.min_len}-{cfg.max_len}: widen them or ask for fewer.")


# Training-side corruption (EFT): may change as the testbed's judge training is tuned.
corrupt = corrupt_v1


def _training_wrong(rng: random.Random, row: dict, args: tuple) -> str:
    task = TASKS[row["task"]]
    return task.wrong(*args, rng, row["answer"]) if task.wrong else corrupt(rng, row["answer"], row["task"])


def _heldout_wrong_v1(rng: random.Random, row: dict, args: tuple) -> str:
    wrong = {"pair": _wrong_pair_v1}.get(row["task"])
    return wrong(*args, rng, row["answer"]) if wrong else corrupt_v1(rng, row["answer"], row["task"])


# The held-out judge set's wrong answers, one frozen generator per `testbed.heldout_version`. A published
# held-out set never changes: a better corruption for training goes into `_training_wrong`, and one for
# evaluation into a new version here (whose numbers are never compared with the old version's).
HELDOUT_WRONG = {1: _heldout_wrong_v1}  # its keys are schema.HELDOUT_VERSIONS


def wrong_answer(rng: random.Random, row: dict, heldout_version: int | None = None) -> str:
    """A plausible wrong answer to an instance {task, instruction, answer}: the training side's, or
    with `heldout_version` the frozen held-out generator's."""
    args = _match(row["instruction"])[1].groups()
    make = _training_wrong if heldout_version is None else HELDOUT_WRONG[heldout_version]
    while True:
        wrong = make(rng, row, args)
        if wrong != row["answer"]:
            return wrong


def judgment(instruction: str, response: str, label: str, score: int, reasoning: bool) -> str:
    """The EFT judgment: "Score: X", or with `reasoning` the check worked out first ("sort: abcd;
    given abcd: same. Score: 1"; for `pair`, the proposed pair verified: "8+5=13 vs 9: differs. Score: 0")."""
    if not reasoning:
        return f"{label}: {score}"
    name, m = _match(instruction)
    task = TASKS[name]
    if task.explain:
        why = task.explain(*m.groups(), response)
    else:
        answer = task.solve(*m.groups())
        why = f"{name}: {answer}; given {response}: {'same' if response.strip() == answer else 'different'}"
    return f"{why}. {label}: {score}"


def _judged(rows: list[dict], rng: random.Random, label: str, max_score: int, both: bool,
            reasoning: bool = False, heldout_version: int | None = None) -> list[dict]:
    """EFT records: each instance with its correct answer, a wrong one, or (both) one of each."""
    out = []
    for r in rows:
        kinds = (True, False) if both else (rng.random() < 0.5,)
        for right in kinds:
            response = r["answer"] if right else wrong_answer(rng, r, heldout_version)
            score = max_score if right else 0
            out.append({"task": r["task"], "instruction": r["instruction"], "response": response,
                        "judgment": judgment(r["instruction"], response, label, score, reasoning), "score": score})
    return out


def attach(cfg: Config, rd: RunDir) -> Config:
    """The config with `data.*` and `eval.*` pointing at the run's testbed files (written by `write`)."""
    paths = rd.testbed_files
    taken = {k: v for k, v in (("data.ift_path", cfg.data.ift_path), ("data.eft_path", cfg.data.eft_path),
                               ("eval.prompts_path", cfg.eval.prompts_path), ("eval.eft_path", cfg.eval.eft_path))
             if v and Path(v) not in paths.values()}
    if taken:
        raise ConfigError(f"testbed.enabled=true writes its own data; leave {', '.join(taken)} unset.")
    data = replace(cfg.data, ift_path=str(paths["ift"]), eft_path=str(paths["eft"]))
    ev = replace(cfg.eval, prompts_path=str(paths["heldout_prompts"]), eft_path=str(paths["heldout_eft"]))
    return replace(cfg, data=data, eval=ev)


def write(cfg: Config, rd: RunDir) -> None:
    """Write the testbed data unless it is there for these settings (it depends on nothing else)."""
    if cfg.testbed.family is TestbedFamily.constraints:
        return testbed_constraints.write(cfg, rd)

    tb, paths = cfg.testbed, rd.testbed_files
    judged_as = (cfg.judge.score_names[0], cfg.judge.max_score)
    reasoning = cfg.judge.reasoning
    settings = json.dumps({"testbed": asdict(tb), "seed": cfg.seed, "judge": [*judged_as, reasoning],
                           "template": cfg.prompts.template, "num_shots": cfg.prompts.num_shots}, sort_keys=True)
    stamp = paths["ift"].with_name("settings.json")
    if stamp.is_file() and stamp.read_text() == settings and all(p.is_file() for p in paths.values()):
        return
    heldout = instances(tb, random.Random(tb.heldout_seed), tb.n_heldout)
    rng = random.Random(cfg.seed)
    train = instances(tb, rng, tb.n_ift + tb.n_eft, exclude=frozenset(key(r["instruction"]) for r in heldout))
    answered, judged = train[: tb.n_ift], train[tb.n_ift :]
    template = Template(cfg.prompts.template, ("examples",), key="prompts.template")
    seeds = [r["instruction"] for r in answered]
    demos = [{"kind": "self_instruct", "instruction": instruction_request(
        template, rng.sample(seeds, cfg.prompts.num_shots)), "response": rng.choice(judged)["instruction"]}
        for _ in range(tb.n_self_instruct)]
    write_jsonl(paths["heldout_prompts"], [{"id": f"tb{i:04d}", "prompt": r["instruction"], "task": r["task"]}
                                           for i, r in enumerate(heldout)])
    # the held-out judgments are scored, never trained on: their reasoning is the training data's format
    write_jsonl(paths["heldout_eft"], _judged(heldout, random.Random(tb.heldout_seed + 1), *judged_as, both=True,
                                              reasoning=reasoning, heldout_version=tb.heldout_version))
    write_jsonl(paths["eft"], _judged(judged, rng, *judged_as, both=False, reasoning=reasoning))
    write_jsonl(paths["ift"], [{"kind": "task", "instruction": r["instruction"], "response": r["answer"]}
                               for r in answered] + demos)
    atomic_write_text(stamp, settings)
