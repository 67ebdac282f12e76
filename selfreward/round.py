"""The round as one table: every stage, what it writes, which model runs it, what it reads, who runs
it, how it draws its randomness, and which settings shape it.

The rest of the package derives from this table: the run directory's layout (`rundir`), the
generation worker's runners, models and inputs (`stages`), the orchestrator's order and which changed
settings a finished stage refuses (`loop`), what `status` expects, and every stage's seed. The core
rows are the paper's round; a variant's stages are rows its module declares (`selfreward.variants`),
entered here when it is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from selfreward.schema import Config


class StageName(str, Enum):
    """Every stage's name: its row below, its manifest entry, its log's name and its `restart_from`
    value (the init is round 0's stage, not a round stage)."""

    init = "init"
    prompts = "prompts"
    candidates = "candidates"
    judge = "judge"
    pairs = "pairs"
    update = "update"
    evaluate = "evaluate"

    # a member reads as its name wherever it is written: paths, manifests, logs, messages
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Role(str, Enum):
    """Which model runs a stage (`RunDir.stage_model` resolves it for round t)."""

    policy = "policy"  # M_t
    initial = "initial"  # M1
    previous = "previous"  # M_{t-1}
    judge = "judge"  # judge.model, or M_t itself; none when scores need no model (Variant.judge_model, oracle)
    prompt_writer = "prompt_writer"  # prompts.model: M_t, M1 or a fixed model


class Runner(str, Enum):
    """Who runs a stage: the generation worker (`selfreward.stages`: its prompts, sample and judge
    runners, or the row's own `run`), a training launch (`selfreward.train.*`), the evaluation
    (`selfreward.evaluate`), or the orchestrator itself."""

    prompts = "prompts"
    sample = "sample"
    judge = "judge"
    generate = "generate"  # a variant's own generation stage: the row's `run`
    train = "train"
    evaluate = "evaluate"
    orchestrator = "orchestrator"


def _always(cfg: Config, t: int) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str  # a StageName, or the name a variant gives a stage it adds
    # What it writes in round_<t>/ (the first is its main output; the rest are moved with it on restart).
    files: tuple[str, ...]
    runner: Runner
    # Its offset in the per-(seed, round, stage) sampling seed; unique per stage.
    seed: int | None = None
    # Which model generates for it: a Role, or a function (run_dir, cfg, t) -> model path; None: none.
    model: Role | Callable | None = None
    inputs: tuple[str, ...] = ()  # the stages whose outputs it reads
    # Config keys (or key prefixes) that shape what it writes: a finished stage refuses to rerun
    # under changed values of these (see `resume.freeze`).
    settings: tuple[str, ...] = ()
    # A stage a variant adds: the stage it runs after, and whether round t of this config runs it.
    after: str | None = None
    when: Callable[[Config, int], bool] = _always
    # Its work, when the runner's own does not do it: a generate stage's (generator, cfg, rd, t, stage)
    # -> manifest entry, or what a training stage trains on, written by (cfg, rd, t) -> None.
    run: Callable | None = None
    # A judge stage's judge, when it is not the round's: cfg -> JudgeConfig.
    judge: Callable | None = None


# The init stage (round 0): not a round stage, but the settings that shape M1 are refused the same way.
# judge.reasoning: the testbed writes its EFT judgments with the check worked out.
INIT_SETTINGS = ("seed", "model", "data", "train", "init", "lora", "judge.template", "judge.reasoning", "testbed")

N = StageName
# The paper's round. A variant's stages (`Variant.stages`, `selfreward.variants`) go in after the row
# they name; `add_stages` enters them here when the variant is registered.
CORE = (
    Stage(N.prompts, ("prompts.jsonl",), Runner.prompts, seed=0, model=Role.prompt_writer, settings=("prompts",)),
    Stage(N.candidates, ("candidates.jsonl",), Runner.sample, seed=1, model=Role.policy, inputs=(N.prompts,),
          settings=("generation",)),
    Stage(N.judge, ("judgments.jsonl",), Runner.judge, seed=2, model=Role.judge, inputs=(N.candidates,),
          settings=("judge", "variant.name")),
    # seed: the variant's rule may draw (label flips); every variant.* setting not named by one of
    # its stages shapes the pairs
    Stage(N.pairs, ("pairs.jsonl", "sft.jsonl"), Runner.orchestrator, seed=11, inputs=(N.candidates, N.judge),
          settings=("pairs", "update.method", "variant")),
    Stage(N.update, ("model", "train"), Runner.train, inputs=(N.pairs,), settings=("update",)),
    Stage(N.evaluate, ("eval.json", "eval_responses.jsonl"), Runner.evaluate, seed=9, inputs=(N.update,),
          settings=("eval",)),
)
del N
_ADDED: list[Stage] = []


def in_order(rows) -> list[Stage]:
    """The core rows with `rows` (stages variants add) each after the row it names, in their order."""
    out = list(CORE)
    for added in rows:
        at = next(i for i, s in enumerate(out) if s.name == added.after)
        while at + 1 < len(out) and _descends(out[at + 1], added.after, out):
            at += 1  # after the stages already placed after it (and after those)
        out.insert(at + 1, added)
    return out


def _descends(stage: Stage, name: str, rows: list[Stage]) -> bool:
    by_name = {s.name: s for s in rows}
    while stage.after:
        if stage.after == name:
            return True
        stage = by_name[stage.after]
    return False


def add_stages(rows) -> None:
    """Enter a variant's stages in the table (`selfreward.variants.register`); a name or seed offset
    that another stage has is refused, and then none of `rows` is entered."""
    taken = {s.name: s for s in (*CORE, *_ADDED)}
    new = []
    for added in rows:
        if added.name in taken:
            if taken[added.name] == added:
                continue  # the same variant registered again
            raise ValueError(f"A stage named {added.name!r} is already in the stage table.")
        if added.after not in taken or added.after in (StageName.pairs, StageName.update, StageName.evaluate):
            raise ValueError(f"Stage {added.name!r}: 'after' must name a stage before the pairs, got {added.after!r}.")
        if added.seed is not None and added.seed in {s.seed for s in taken.values()}:
            raise ValueError(f"Stage {added.name!r}: seed offset {added.seed} is another stage's.")
        taken[added.name] = added
        new.append(added)
    _ADDED.extend(new)


def table() -> tuple[Stage, ...]:
    """Every stage a round can run, the registered variants' included, in round order."""
    return tuple(in_order(_ADDED))


def row(name: str) -> Stage:
    for s in (*CORE, *_ADDED):
        if s.name == name:
            return s
    raise KeyError(f"No stage named {name!r} in the stage table.")


def round_stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in table())


def generation_stage_names() -> tuple[str, ...]:
    generation = (Runner.prompts, Runner.sample, Runner.judge, Runner.generate)
    return tuple(s.name for s in table() if s.runner in generation)


def training_stage_names() -> tuple[str, ...]:
    return (StageName.init, *(s.name for s in table() if s.runner is Runner.train))


def round_stages(cfg: Config, t: int = 1) -> list[Stage]:
    """The stages round t of this config runs, in order: the core stages its variant does not skip,
    and the variant's own stages whose `when` holds."""
    core = [s for s in CORE if s.name not in cfg.variant.skips]
    return [s for s in in_order(cfg.variant.stages) if s in core or (s.after and s.when(cfg, t))]


# Settings under those prefixes that shape nothing a stage writes: how training is watched.
WATCH_SETTINGS = ("train.verify_checkpoints", "train.keep_checkpoints", "train.report_to")


def setting_stages() -> dict[str, str | None]:
    """Setting (key or prefix) -> the first stage it shapes (None: none)."""
    out = {**dict.fromkeys(INIT_SETTINGS, StageName.init), **dict.fromkeys(WATCH_SETTINGS)}
    for stage in table():
        for key in stage.settings:
            out.setdefault(key, stage.name)
    return out


def restart_value(t: int, stage: StageName) -> str:
    """The `restart_from` value that redoes `stage` of round t: init, judge (round 1), round_2.judge."""
    return str(StageName.init) if not t else str(stage) if t == 1 else f"round_{t}.{stage}"


def log_name(t: int, part: str) -> str:
    """The stem of a stage process's log in <run_dir>/logs/ (and its TensorBoard folder): round_2.judge,
    round_2.generation; the init's: init, init.evaluate."""
    if t:
        return f"round_{t}.{part}"
    return str(StageName.init) if part == StageName.init else f"{StageName.init}.{part}"


def stage_seed(cfg: Config, t: int, stage: StageName) -> int:
    """The sampling seed of a stage, deterministic per (run seed, round, stage), so rerunning one
    stage reproduces it. Round 0 is the init's evaluation."""
    return cfg.seed * 100_003 + t * 101 + row(stage).seed
