"""The real-model testbed (`recipe=testbed_smollm2`, `testbed.family=constraints`): ordinary prompts
with an instruction-following constraint appended, a program checking the answer (`selfreward.constraints`).

    Write a short paragraph about tides. Do not use any commas.

`write` puts the run's data into `<run_dir>/testbed/`, under the string testbed's file names (the
loop, the evaluation and the reports read both the same way):
- `ift.jsonl`: `testbed.n_ift` seed prompts (ordinary, no constraint) that self-instruct draws its
  shots from, each with the base model's greedy answer (init.data=eft does not train on them);
- `eft.jsonl`: the judge's training data, as the paper's EFT is made: the base model's own samples
  (`testbed.eft_samples` each) on the seed prompts with a trained-type constraint appended, labelled
  by the checker, class-balanced, at most `testbed.n_eft`, judged "Score: 1" / "Score: 0" (with
  `judge.reasoning=true` the check written out first: "Check: 2 commas, on topic. Score: 0");
- `heldout_prompts.jsonl`, `heldout_eft.jsonl`: the frozen held-out set of `testbed.heldout_version`
  (`seed_data/testbed_constraints/v<N>/`, made once by `freeze`): prompts on topics no training
  prompt has, 8 per constraint type, and the base model's samples on them labelled by the checker
  (a passing and a failing one of the same prompt where it wrote both). The evaluation takes the
  prompts of the configured types: `testbed.tasks` (the headline) and `testbed.heldout_tasks` apart.

The samples depend on the base model and these settings, not on the run seed: they are made once and
kept in `$SELFREWARD_CACHE/testbed/<key>/`, so every arm and seed of a sweep judges from the same EFT
data (and, `init.seed` set, from the same M1: the sweep trains it once).

In the rounds the model writes ordinary prompts from k seed prompts (self-instruct, as in every
recipe); `constrain` appends a constraint of a trained type to each (drawn per prompt, recorded as
`constraint`), the way verifiable instruction-following data is made. No checker signal reaches
training except through the model's own judgments (`judge.method=oracle`, the ceiling, excepted).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from selfreward import constraints
from selfreward.errors import ConfigError
from selfreward.files import atomic_write_text, file_sha256, read_jsonl, write_jsonl
from selfreward.generation import load_generator
from selfreward.generation.base import Sampling
from selfreward.models import resolve, user_cache
from selfreward.rundir import RunDir
from selfreward.schema import Config
from selfreward.templates import chat_prompt

FROZEN = Path(__file__).parent / "seed_data" / "testbed_constraints"
# The published held-out files: a version never changes (a test holds these hashes).
HELDOUT_SHA256 = {1: {"heldout_prompts.jsonl": "06d384e3c79d1c05bf87386c84d03d3bfee2d667aae276818f3ce2a646f9e3b7",
                      "heldout_eft.jsonl": "b88261fd0563111d4237fa27bce59dcd6047a549979af1b4db753c6d65fac313"}}

ASKS = ("Write a short paragraph about {}.", "Explain {} to a curious teenager.", "Describe {} in a few sentences.",
        "Tell me something interesting about {}.", "Give some practical advice about {}.", "Why does {} matter?")
TRAIN_TOPICS = """tides volcanoes honeybees bicycles coffee chess rainbows libraries glaciers photosynthesis
earthquakes deserts penguins bridges gardening recycling thunderstorms forests music painting
friendship sleep breakfast rivers mountains electricity magnets batteries airplanes trains
dinosaurs fossils planets comets telescopes microscopes vaccines exercise swimming football
cooking bread cheese chocolate tea oceans coral whales dolphins owls wolves elephants spiders
butterflies mushrooms seasons winter autumn clouds wind solar-power computers robots internet
passwords money banks markets maps languages poetry theatre museums castles pyramids islands
lighthouses harbors farming wheat rice cotton""".split()
HELDOUT_TOPICS = """kangaroos waterfalls origami lanterns marathons submarines quilting saffron geysers
hedgehogs compasses orchestras avalanches beekeeping calligraphy lighthouse-keepers meteorites
porcelain sundials tornadoes volleyball windmills yoga zebras""".split()


def validate(cfg: Config) -> None:
    tb = cfg.testbed
    if not cfg.judge.max_score == 1 or cfg.judge.score_names != ["Score"]:
        raise ConfigError("testbed.family=constraints judges pass/fail: it needs judge.max_score=1 and "
                          "judge.score_names=[Score].")
    if tb.n_ift < max(cfg.prompts.num_shots, 1) or tb.n_eft < 2 or tb.eft_samples < 1:
        raise ConfigError("testbed.family=constraints needs 'testbed.n_ift' >= 'prompts.num_shots', "
                          "'testbed.n_eft' >= 2 and 'testbed.eft_samples' >= 1.")
    if tb.heldout_version not in HELDOUT_SHA256:
        raise ConfigError(f"Unknown choice {tb.heldout_version} for 'testbed.heldout_version' "
                          f"(testbed.family=constraints). Valid choices: {', '.join(map(str, HELDOUT_SHA256))}.")


def seed_prompts(n: int, seed: int) -> list[str]:
    """`n` distinct ordinary prompts on the training topics (the held-out topics never)."""
    rng = random.Random(f"constraints:{seed}")
    pool = [a.format(t.replace("-", " ")) for t in TRAIN_TOPICS for a in ASKS]
    if n > len(pool):
        raise ConfigError(f"'testbed.n_ift' is {n}; the constraint testbed has {len(pool)} seed prompts.")
    return rng.sample(pool, n)


def constrain(prompt: str, types: list[str], rng: random.Random) -> tuple[str, str]:
    """(the prompt with a constraint of one of `types` appended, the type)."""
    name = rng.choice(types)
    return constraints.constrain(prompt, name, rng), name


def constrain_prompts(records: list[dict], types: list[str], seed: int) -> list[dict]:
    """A round's prompts, each with a trained-type constraint appended (drawn from the prompt's own
    stream of `seed`, so rerunning the stage draws the same)."""
    out = []
    for r in records:
        prompt, name = constrain(r["prompt"], types, random.Random(f"{seed}:{r['id']}"))
        out.append({**r, "prompt": prompt, "constraint": name})
    return out


def why_not_a_prompt(text: str) -> str | None:
    """Why a self-written prompt cannot take a constraint: it has one already (the model copied a
    shot's format) or it has no topic word a real answer must use."""
    if constraints.parse(text):
        return "constrained"
    return None if constraints.topic_words(text) else "no_topic"


def judgment(prompt: str, response: str, score: int, reasoning: bool) -> str:
    return f"Check: {constraints.explain(prompt, response)}. Score: {score}" if reasoning else f"Score: {score}"


def model_key(path: str) -> str:
    """The identity of a checkpoint directory: the hashes of its config and weight files."""
    root = Path(path)
    parts = sorted((p.name, file_sha256(p)) for p in root.iterdir() if p.suffix in (".json", ".safetensors"))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def cache_root() -> Path:
    return user_cache() / "testbed"


def base_samples(cfg: Config, model: str, prompts: list[str], n: int, seed: int, greedy: bool = False) -> list[list[str]]:
    """The base model's samples (greedy: its one greedy answer) on `prompts` at the recipe's candidate
    settings, from the user cache when these exact inputs were sampled before."""
    g = cfg.generation
    sampling = Sampling(0.0, 1.0, g.max_new_tokens) if greedy else Sampling(g.temperature, g.top_p, g.max_new_tokens,
                                                                            n=n, seed=seed)
    what = {"model": model_key(model), "prompts": prompts, "sampling": repr(sampling), "dtype": g.dtype.value,
            "backend": cfg.backend.value}
    path = cache_root() / hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24] / "samples.jsonl"
    if path.is_file():
        return [r["samples"] for r in read_jsonl(path)]
    gen = load_generator(cfg, model)
    print(f"testbed: the base model samples {len(prompts)} x {sampling.n} answers "
          f"(kept in {path.parent})", file=sys.stderr)
    out = gen.generate([chat_prompt(gen.tokenizer, p) for p in prompts], sampling, desc="testbed: base samples")
    write_jsonl(path, [{"prompt": p, "samples": s} for p, s in zip(prompts, out)])
    atomic_write_text(path.with_name("inputs.json"), json.dumps({**what, "prompts": len(prompts)}, indent=1))
    return out


def labelled(prompts: list[str], samples: list[list[str]]) -> list[dict]:
    """Every sample with the checker's verdict, in prompt order."""
    return [{"instruction": p, "task": constraints.parse(p)[0].name, "response": s, "score": int(constraints.check(p, s))}
            for p, ss in zip(prompts, samples) for s in ss]


def balanced(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """At most `n` rows, as many passing as failing (the smaller class sets the size)."""
    passing, failing = [r for r in rows if r["score"]], [r for r in rows if not r["score"]]
    k = min(len(passing), len(failing), n // 2)
    if not k:
        raise ConfigError(f"testbed: the base model's {len(rows)} samples are all {'passing' if passing else 'failing'}"
                          ": no class-balanced EFT set (more 'testbed.n_ift' or 'testbed.eft_samples').")
    chosen = rng.sample(passing, k) + rng.sample(failing, k)
    rng.shuffle(chosen)
    return chosen


def heldout(version: int) -> tuple[list[dict], list[dict]]:
    """(prompts, labelled samples) of a frozen held-out version."""
    d = FROZEN / f"v{version}"
    return read_jsonl(d / "heldout_prompts.jsonl"), read_jsonl(d / "heldout_eft.jsonl")


def heldout_subset(version: int, types: list[str], n: int) -> tuple[list[dict], list[dict]]:
    """The frozen set's prompts of `types` (at most `n`, the types taking turns, each in file order)
    and their labelled samples."""
    prompts, judged = heldout(version)
    by_type = [[p for p in prompts if p["task"] == name] for name in types]
    turns = [g[i] for i in range(max(map(len, by_type), default=0)) for g in by_type if i < len(g)][:n]
    kept = {p["prompt"] for p in turns}
    order = {p["id"]: i for i, p in enumerate(prompts)}
    return sorted(turns, key=lambda p: order[p["id"]]), [r for r in judged if r["instruction"] in kept]


def write(cfg: Config, rd: RunDir) -> None:
    """Write the run's testbed data unless it is there for these settings."""
    tb, paths = cfg.testbed, rd.testbed_files
    reasoning = cfg.judge.reasoning
    base = rd.base(cfg)
    settings = json.dumps({"testbed": {k: (v.value if hasattr(v, "value") else v) for k, v in vars(tb).items()},
                           "judge_reasoning": reasoning, "generation": repr(cfg.generation), "base": base},
                          sort_keys=True)
    stamp = paths["ift"].with_name("settings.json")
    if stamp.is_file() and stamp.read_text() == settings and all(p.is_file() for p in paths.values()):
        return
    seeds = seed_prompts(tb.n_ift, tb.heldout_seed)
    rng = random.Random(f"constraints-eft:{tb.heldout_seed}")
    constrained = [constrain(p, tb.tasks, rng)[0] for p in seeds]
    samples = base_samples(cfg, base, constrained, tb.eft_samples, seed=tb.heldout_seed)
    greedy = base_samples(cfg, base, seeds, 1, seed=0, greedy=True)
    eft = balanced(labelled(constrained, samples), tb.n_eft, rng)
    prompts, judged = heldout_subset(tb.heldout_version, [*tb.tasks, *tb.heldout_tasks], tb.n_heldout)
    write_jsonl(paths["heldout_prompts"], prompts)
    write_jsonl(paths["heldout_eft"], [{**r, "judgment": judgment(r["instruction"], r["response"], r["score"], reasoning)}
                                       for r in judged])
    write_jsonl(paths["eft"], [{**r, "judgment": judgment(r["instruction"], r["response"], r["score"], reasoning)}
                               for r in eft])
    write_jsonl(paths["ift"], [{"kind": "seed_prompt", "instruction": p, "response": g[0]} for p, g in zip(seeds, greedy)])
    atomic_write_text(stamp, settings)


def freeze(cfg: Config, model: str, version: int, out: Path, per_type: int = 8) -> None:
    """Make a held-out version (once; the files are then shipped and never changed): `per_type`
    prompts per constraint type on the held-out topics, and the base model's samples on them
    labelled by the checker, a passing and a failing one per prompt where both exist."""
    rng = random.Random(f"constraints-heldout:{version}")
    prompts = []
    for name in constraints.FAMILY:
        for _ in range(per_type):
            ask, topic = rng.choice(ASKS), rng.choice(HELDOUT_TOPICS)
            prompts.append({"id": f"c{len(prompts):04d}", "prompt": constraints.constrain(
                ask.format(topic.replace("-", " ")), name, rng), "task": name, "topic": topic})
    samples = base_samples(cfg, model, [p["prompt"] for p in prompts], 4, seed=version)
    judged = []
    for rows in (labelled([p["prompt"]], [s]) for p, s in zip(prompts, samples)):
        by = {r["score"]: r for r in rows}  # the last passing and the last failing sample
        judged += [by[k] for k in (1, 0) if k in by]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "heldout_prompts.jsonl", prompts)
    write_jsonl(out / "heldout_eft.jsonl", judged)
    g = cfg.generation
    atomic_write_text(out / "made_by.json", json.dumps({
        "model": cfg.model.name_or_path, "model_key": model_key(model), "samples_per_prompt": 4,
        "temperature": g.temperature, "top_p": g.top_p, "max_new_tokens": g.max_new_tokens, "dtype": g.dtype.value},
        indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """python -m selfreward.testbed_constraints freeze VERSION [overrides]: write a new held-out version."""
    from selfreward.config import compose  # config imports this module (its `validate`)

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "freeze" or not args[1].isdigit():
        print(main.__doc__, file=sys.stderr)
        return 2
    version, cfg = int(args[1]), compose(["recipe=testbed_smollm2", *args[2:]])
    out = FROZEN / f"v{version}"
    if out.exists():
        print(f"{out} exists: a published held-out version is never changed.", file=sys.stderr)
        return 2
    freeze(cfg, resolve(cfg.model.name_or_path), version, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
