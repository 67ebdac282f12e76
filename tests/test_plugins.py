"""Variants are plug-ins: one module each (checked on the package's text), and a variant written in a
test file alone, or found through an entry point, runs like a built-in one."""

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import selfreward
from selfreward import round as stage_table
from selfreward.config import compose
from selfreward.errors import ConfigError
from selfreward.files import read_jsonl, write_jsonl
from selfreward.round import Runner, Stage, StageName
from selfreward.schema import bounded
from selfreward.variants import REGISTRY, register
from selfreward.variants.base import Variant
from tests.helpers import SMALL

PACKAGE = Path(selfreward.__file__).parent
REGISTRY_FILE = PACKAGE / "variants" / "__init__.py"


def mentions(text: str, cls: type) -> bool:
    """Whether a file names a variant: `variant=<name>`, its name in quotes on a line about the
    variant, its class in code, or an import of its module."""
    name, module = cls().name, cls.__module__.rsplit(".", 1)[1]
    named = re.compile(rf"""variant\s*[=:]\s*{name}\b|\b{cls.__name__}(?=[(),\].:]|$)"""
                       rf"""|variants\.{module}\b|from selfreward\.variants import [\w, ]*\b{module}\b""")
    quoted = re.compile(rf"""(['"]){name}\1""")
    return any(named.search(line) or ("variant" in line and quoted.search(line)) for line in text.splitlines())


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - {"base"}))
def test_each_variant_is_named_only_by_its_module_and_the_registry(name):
    cls = REGISTRY[name]
    found = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if mentions(p.read_text(), cls))
    assert found and set(found) <= {str(Path(cls.__module__.replace(".", "/") + ".py").relative_to("selfreward")),
                                    str(REGISTRY_FILE.relative_to(PACKAGE))}, found


def test_the_check_sees_a_variant_named_elsewhere():
    meta = REGISTRY["meta"]
    assert mentions("if cfg.variant.name == 'meta':", meta) and mentions("variant=meta needs", meta)
    assert mentions("from selfreward.variants.meta import run_meta_judge", meta)
    assert mentions("isinstance(cfg.variant, Meta)", meta)
    assert not mentions("the meta_judge stage reads meta_judgments.jsonl", meta)
    assert not mentions('Meta-Rewarding\'s length control; reason = "meta"', meta)


# -- a throwaway variant from this file alone ---------------------------------------------------------

TALLY = "toy_tally"


def write_tally(gen, cfg, rd, t, stage) -> dict:
    """A generation stage of its own that needs no model: candidates per prompt."""
    counts: dict[str, int] = {}
    for c in read_jsonl(rd.output(t, StageName.candidates)):
        counts[c["prompt_id"]] = counts.get(c["prompt_id"], 0) + 1
    write_jsonl(rd.output(t, stage), [{"prompt_id": p, "n": n} for p, n in counts.items()])
    return {"records": len(counts)}


@dataclass
class Toy(Variant):
    """Keeps at most `keep` of the base pairs, marked; adds a stage that tallies the candidates."""

    name: str = "toy"
    keep: int = bounded(1, "[1, inf)", "Most pairs kept.")

    stages = (Stage(TALLY, ("toy_tally.jsonl",), Runner.generate, inputs=(StageName.candidates,),
                    after=StageName.judge, run=write_tally),)

    def validate(self, cfg):
        if cfg.update.method.value != "dpo":
            raise ConfigError("variant=toy needs update=dpo.")

    def preference_pairs(self, cfg, rd, t):
        pairs, drops = self.best_vs_worst(cfg, rd, t)
        drops["dropped_toy"] = max(0, len(pairs) - self.keep)
        return [{**p, "toy": True} for p in pairs[: self.keep]], drops


@pytest.fixture
def toy():
    added = list(stage_table._ADDED)
    register(Toy)
    yield Toy
    REGISTRY.pop("toy")
    stage_table._ADDED[:] = added


def test_a_registered_variant_composes_validates_and_places_its_stage(toy):
    cfg = compose(["variant=toy", "variant.keep=2"])
    assert isinstance(cfg.variant, Toy) and cfg.variant.keep == 2
    assert [s.name for s in stage_table.round_stages(cfg)] == ["prompts", "candidates", "judge", TALLY, "pairs",
                                                               "update", "evaluate"]
    with pytest.raises(ConfigError, match=r"^'variant.keep' must be at least 1, got 0"):
        compose(["variant=toy", "variant.keep=0"])
    with pytest.raises(ConfigError, match="needs update=dpo"):
        compose(["variant=toy", "update=sft"])
    with pytest.raises(ConfigError, match=r"Unknown config key 'variant.meta_share' for variant=toy. Its settings: "):
        compose(["variant=toy", "variant.meta_share=0.2"])

    @dataclass
    class Clash(Variant):
        name: str = "clash"
        stages = (Stage(TALLY, ("clash.jsonl",), Runner.generate, after=StageName.judge, run=write_tally),)

    with pytest.raises(ValueError, match="already in the stage table"):
        register(Clash)
    assert "clash" not in REGISTRY

    @dataclass
    class HalfClash(Variant):  # its first stage is new, its second clashes: neither is entered
        name: str = "half_clash"
        stages = (Stage("half_new", ("half.jsonl",), Runner.generate, after=StageName.judge, run=write_tally),
                  Stage(TALLY, ("clash.jsonl",), Runner.generate, after=StageName.judge, run=write_tally))

    with pytest.raises(ValueError, match="already in the stage table"):
        register(HalfClash)
    assert "half_new" not in stage_table.round_stage_names()


@pytest.mark.slow
def test_a_variant_from_a_test_file_runs_a_round(toy, run_from_init):
    from selfreward.cli import main

    run_dir = run_from_init()
    args = ["run", "recipe=tiny", *SMALL, "launch.accelerate_config=null", "eval.enabled=false", "rounds=1",
            "variant=toy", f"run_dir={run_dir}"]
    assert main(args) == 0
    r1 = run_dir / "round_1"
    pairs, manifest = read_jsonl(r1 / "pairs.jsonl"), json.loads((r1 / "manifest.json").read_text())
    assert len(pairs) == 1 and pairs[0]["toy"] is True and manifest["pairs"]["dropped_toy"] >= 0
    assert sum(r["n"] for r in read_jsonl(r1 / "toy_tally.jsonl")) == len(read_jsonl(r1 / "candidates.jsonl"))
    assert list(manifest) == ["prompts", "candidates", "judge", TALLY, "pairs", "update"]
    assert (r1 / "model").is_dir()
    assert main(args) == 0  # rerun: every stage done, nothing redone


def test_a_variant_behind_an_entry_point_is_found_in_a_fresh_process(tmp_path):
    """An installed plug-in (here a module and its dist-info on PYTHONPATH) registers, stages included,
    in every process of a run: the orchestrator's and each stage worker's."""
    (tmp_path / "toy_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "from selfreward.round import Runner, Stage, StageName\n"
        "from selfreward.variants.base import Variant\n\n\n"
        "@dataclass\nclass Plugged(Variant):\n    name: str = 'plugged'\n    label = 'a plug-in'\n"
        "    stages = (Stage('plugged_tally', ('plugged.jsonl',), Runner.generate, after=StageName.judge),)\n")
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[selfreward.variants]\nplugged = toy_plugin:Plugged\n")
    code = ("from selfreward.config import compose; from selfreward.round import generation_stage_names; "
            "c = compose(['variant=plugged']); "
            "print(type(c.variant).__name__, c.variant.label, 'plugged_tally' in generation_stage_names())")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(selfreward.__file__).parents[1]}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "Plugged a plug-in True"
    (info / "entry_points.txt").write_text("[selfreward.variants]\nplugged = toy_plugin:Missing\n")
    out = subprocess.run([sys.executable, "-c", "import selfreward.variants"], capture_output=True, text=True,
                         env=env)
    assert out.returncode != 0 and "The variant plug-in 'plugged' (toy_plugin:Missing" in out.stderr


def test_the_tiny_tokenizer_is_trained_on_the_same_text_under_every_variant():
    """seed_texts: the variant does not change the tiny tokenizer (arms of a sweep share one M1); a
    registered variant's default templates are part of it under every variant."""
    from selfreward.data import seed_texts

    texts = {name: seed_texts(compose([f"variant={name}"])) for name in REGISTRY}
    assert all(t == texts["base"] for t in texts.values())
    from selfreward.resources import find_prompt

    assert find_prompt("meta_judge.txt", "variant.meta_template").read_text() in texts["base"]


def test_every_stage_row_names_callables():
    """A row's `run`, `judge`, `when` and model function are callables (a variant's class body can shadow
    a module function with a field of the same name), and a judge row's judge is a judge config."""
    from selfreward.round import Role, table
    from selfreward.schema import JudgeConfig

    for s in table():
        assert all(f is None or callable(f) for f in (s.run, s.judge, s.when)), s.name
        assert s.model is None or isinstance(s.model, Role) or callable(s.model), s.name
    for name, cls in REGISTRY.items():
        cfg = compose([f"variant={name}"])
        for s in cls.stages:
            assert s.judge is None or isinstance(s.judge(cfg), JudgeConfig), s.name
