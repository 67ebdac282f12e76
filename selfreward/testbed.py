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
from selfreward.stats import pair_outcome
from selfreward.templates import Template
from selfreward.variants.cream import unflipped
from selfreward.variants.votes import majority, tally

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


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def metrics(prompts: list[dict], answers: list[str], eft: list[dict], judge_scores: list[float | None],
            max_score: float, training: list[dict] | None = None, heldout_types: frozenset = frozenset()) -> dict:
    """Held-out metrics against the checker.

    accuracy: greedy answers to `prompts` that are correct, over the trained types (`heldout_types`,
    never trained on, give heldout_types_accuracy beside it); mean_words: their length; judge_accuracy: held-out EFT items whose
    judge score is on the right side of the scale's midpoint (unparsed = wrong); judge_pairwise_accuracy:
    instances with a correct and a wrong answer where the correct one scores higher (ties count half,
    unparsed = wrong: `stats.pair_outcome`); judge_parsed: the share of EFT items whose score parsed;
    `training` (the round's pairs or SFT set): pair_precision = chosen (kept) responses that are correct,
    rejected_wrong = rejected responses that are wrong."""
    right = [bool(check(p["prompt"], a)) for p, a in zip(prompts, answers)]
    truth = [bool(check(e["instruction"], e["response"])) for e in eft]
    said = [None if s is None else s >= max_score / 2 for s in judge_scores]  # None never equals a truth
    by_instance: dict[str, dict[bool, float | None]] = {}
    for e, t, s in zip(eft, truth, judge_scores):
        by_instance.setdefault(e["instruction"], {})[t] = s
    pairwise = [pair_outcome(d[True], d[False]) for d in by_instance.values() if len(d) == 2]
    prompt_task = [task_name(p["prompt"]) for p in prompts]
    eft_task = [task_name(e["instruction"]) for e in eft]
    per_task = {name: {"accuracy": _share([r for r, n in zip(right, prompt_task) if n == name]),
                       "judge_accuracy": _share([s == t for s, t, n in zip(said, truth, eft_task) if n == name])}
                for name in dict.fromkeys(prompt_task)}
    out = {
        "accuracy": _share([r for r, n in zip(right, prompt_task) if n not in heldout_types]),
        **({"heldout_types_accuracy": _share([r for r, n in zip(right, prompt_task) if n in heldout_types])}
           if heldout_types else {}),
        "mean_words": round(sum(len(a.split()) for a in answers) / len(answers), 2) if answers else None,
        "judge_accuracy": _share([s == t for s, t in zip(said, truth)]),
        "judge_pairwise_accuracy": round(sum(pairwise) / len(pairwise), 4) if pairwise else None,
        "judge_parsed": _share([s is not None for s in judge_scores]),
        "n_prompts": len(prompts),
        "n_judged": len(eft),
        "per_task": per_task,
    }
    if training is not None:
        # response pairs only (not judge pairs), as the judge ordered them (variant=cream flips some)
        rows = [unflipped(r) for r in training if r.get("kind", "response") == "response"]
        out["pair_precision"] = _share([bool(check(r["prompt"], r.get("chosen", r.get("response")))) for r in rows])
        rejected = [not check(r["prompt"], r["rejected"]) for r in rows if "rejected" in r]
        out["rejected_wrong"] = _share(rejected)
    return out


def candidate_stats(candidates: list[dict], judgments: list[dict], pattern: str | None = None,
                    votes: bool = True) -> dict:
    """On the round's own prompts, against the checker:
    - candidate_accuracy: sampled candidates that are correct (pass@1 at the round's temperature);
    - judge_own_pairwise_accuracy: how often the judge scores a correct candidate above a wrong one of
      the same prompt (ties half): pair quality rests on this, the judge meeting the model's own mistakes;
    - judge_pick_accuracy: prompts whose top-scored candidate is correct; vote_accuracy: prompts whose
      most-voted answer is correct (TTRL's label accuracy; `pattern` extracts the answers; absent
      without `votes`: free text has no answer to vote on);
    - candidate_best_of_n_accuracy: prompts where some candidate is correct (the ceiling of any pick);
    - generation_verification_gap: the better of the two picks minus candidate_accuracy. A model
      improves itself only where it checks better than it produces ("Mind the Gap", arXiv 2412.02674):
      this is how much better, on its own samples."""
    score = {(j["prompt_id"], j["candidate_id"]): j["score"] for j in judgments}
    groups: dict[str, dict[bool, list[float | None]]] = {}
    best: dict[str, tuple[float, int, bool]] = {}
    right = []
    for c in candidates:
        ok = bool(check(c["prompt"], c["response"]))
        right.append(ok)
        s = score.get((c["prompt_id"], c["candidate_id"]))
        groups.setdefault(c["prompt_id"], {True: [], False: []})[ok].append(s)
        if s is not None and (c["prompt_id"] not in best or (s, -c["candidate_id"]) > best[c["prompt_id"]][:2]):
            best[c["prompt_id"]] = (s, -c["candidate_id"], ok)
    # no judgments at all (self_consistency votes instead): the judge's metrics do not apply
    wins = [pair_outcome(a, b) for g in groups.values() for a in g[True] for b in g[False]] if judgments else []
    prompt_of = {c["prompt_id"]: c["prompt"] for c in candidates}
    voted = [check(prompt_of[pid], top[0]) for pid, g in tally(candidates, pattern).items()
             if (top := majority(g)) is not None] if votes else []
    sampled, pick, vote = _share(right), _share([ok for _, _, ok in best.values()]), _share([bool(v) for v in voted])
    picks = [p for p in (pick, vote) if p is not None]
    return {"candidate_accuracy": sampled,
            "candidate_best_of_n_accuracy": _share([bool(g[True]) for g in groups.values()]),
            "judge_own_pairwise_accuracy": round(sum(wins) / len(wins), 4) if wins else None,
            "n_own_pairs": len(wins) if judgments else None,
            "judge_pick_accuracy": pick,
            **({"vote_accuracy": vote} if votes else {}),
            "generation_verification_gap": round(max(picks) - sampled, 4) if picks and sampled is not None else None}


def sampled_metrics(prompts: list[dict], samples: list[list[str]], pattern: str | None = None, votes: bool = True,
                    heldout_types: frozenset = frozenset()) -> dict:
    """Held-out, over the trained types: sampled_accuracy (the mean over N samples of being correct:
    pass@1 at the sampling temperature), best_of_n_accuracy (some sample is correct: what a perfect
    judge would pick) and, with `votes`, majority_accuracy (the most-voted answer is correct)."""
    kept = [(p, ss) for p, ss in zip(prompts, samples) if task_name(p["prompt"]) not in heldout_types]
    prompts, samples = [p for p, _ in kept], [ss for _, ss in kept]
    right = [bool(check(p["prompt"], s)) for p, ss in zip(prompts, samples) for s in ss]
    best = _share([any(check(p["prompt"], s) for s in ss) for p, ss in zip(prompts, samples)])
    if not votes:
        return {"sampled_accuracy": _share(right), "best_of_n_accuracy": best}
    candidates = [{"prompt_id": p["id"], "prompt": p["prompt"], "candidate_id": j, "response": s}
                  for p, ss in zip(prompts, samples) for j, s in enumerate(ss)]
    prompt_of = {p["id"]: p["prompt"] for p in prompts}
    voted = [bool(check(prompt_of[pid], top[0])) if (top := majority(g)) else False
             for pid, g in tally(candidates, pattern).items()]
    return {"sampled_accuracy": _share(right), "best_of_n_accuracy": best, "majority_accuracy": _share(voted)}
