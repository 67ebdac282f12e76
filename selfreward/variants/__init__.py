"""Self-rewarding variants: each changes one part of the round, switched on with `variant=<name>`.

| variant          | what it changes                                                      | module              |
|------------------|----------------------------------------------------------------------|---------------------|
| base             | nothing: best vs worst of M_t's candidates, judged by M_t            | base.py             |
| meta             | adds judge pairs from a meta-judge of M_t's own judgments             | meta.py             |
| temporal         | rejected from M1 (anchored), chosen from a look-ahead model (future) | temporal.py         |
| consistency      | drops pairs a second judge orders differently                        | consistency.py      |
| length           | picks best/worst inside a length window                              | length.py           |
| seed_anchored    | mixes seed prompts into each round's prompt set                      | seed_anchored.py    |
| self_consistency | no judge: most-voted vs least-voted answer (ScPO)                    | self_consistency.py |
| cream            | labels smoothed by 1 - C, C the agreement with M_{t-1}'s ranking     | cream.py            |
| random           | uniform random scores: the floor every gain is read against          | random_reward.py    |

A variant is one module: a config class extending `selfreward.variants.base.Variant` (its settings,
the stages it adds, its pair and SFT rules, its checks). This registry is where its name is looked
up. Another package adds one with `register(MyVariant)`, or for every process of a run (the
training launches too) with an entry point in the `selfreward.variants` group naming the class.
"""

from __future__ import annotations

import dataclasses
import difflib
from importlib.metadata import entry_points

from omegaconf import OmegaConf

from selfreward.errors import ConfigError
from selfreward.round import add_stages
from selfreward.variants.base import Variant
from selfreward.variants.consistency import Consistency
from selfreward.variants.cream import Cream
from selfreward.variants.length import Length
from selfreward.variants.meta import Meta
from selfreward.variants.random_reward import RandomReward
from selfreward.variants.seed_anchored import SeedAnchored
from selfreward.variants.self_consistency import SelfConsistency
from selfreward.variants.temporal import Temporal

REGISTRY: dict[str, type[Variant]] = {}
ENTRY_POINTS = "selfreward.variants"
# Settings of the config.yaml files written before each variant had its own config class (all of
# them under every variant): dropped where the run's variant does not have them.
LEGACY_KEYS = ("meta_share", "meta_template", "anchored_rejection", "future_chosen", "second_judge",
               "second_template", "length_control", "min_vote_share", "min_vote_margin")


def register(cls: type[Variant]) -> type[Variant]:
    """Enter a variant under its name (its `name` field's default) and its stages in the stage table."""
    if not (isinstance(cls, type) and issubclass(cls, Variant) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"A variant is a dataclass extending selfreward.variants.base.Variant, got {cls!r}.")
    name = cls.__dataclass_fields__["name"].default
    if REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"variant {name!r} is already registered ({REGISTRY[name].__module__}).")
    add_stages(cls.stages)
    REGISTRY[name] = cls
    return cls


for _cls in (Variant, Meta, Temporal, Consistency, Length, SeedAnchored, SelfConsistency, Cream, RandomReward):
    register(_cls)


def _load_plugins() -> None:
    """Register the variants installed packages name under the entry-point group, at import, so that
    every process of a run (a stage worker's command line names the plug-in's stages) knows them."""
    for point in entry_points(group=ENTRY_POINTS):
        if point.name not in REGISTRY:
            try:
                register(point.load())
            except Exception as e:
                raise RuntimeError(f"The variant plug-in {point.name!r} ({point.value}, entry point group "
                                   f"{ENTRY_POINTS!r}) cannot be registered: {e}") from e


_load_plugins()


def lookup(name: str) -> type[Variant]:
    """The variant registered as `name`."""
    if name not in REGISTRY:
        hint = difflib.get_close_matches(name, REGISTRY, n=1)
        raise ConfigError(f"Unknown choice '{name}' for 'variant'.{f' Did you mean {hint[0]!r}?' if hint else ''} "
                          f"Valid choices: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def _own(node: dict, frozen: bool) -> tuple[type[Variant], dict]:
    """The variant a `variant` section names, and the section; a key it does not have is an error
    naming its settings (in a frozen config.yaml, the settings every variant once had are dropped first)."""
    node = dict(node or {})
    cls = lookup(str(node.get("name", "base")))
    fields = {f.name for f in dataclasses.fields(cls)}
    if frozen:
        node = {k: v for k, v in node.items() if k in fields or k not in LEGACY_KEYS}
    unknown = sorted(set(node) - fields)
    if unknown:
        raise ConfigError(f"Unknown config key 'variant.{unknown[0]}' for variant={cls().name}. Its settings: "
                          f"{', '.join(sorted(fields - {'name'}))}.")
    return cls, node


def migrated(node: dict) -> dict:
    """A config.yaml's `variant` section as this version writes it: the settings every variant once
    had are dropped where its variant does not have them."""
    return _own(node, frozen=True)[1]


def settings(node: dict, frozen: bool = False) -> Variant:
    """The `variant` section as its variant's config object (`frozen`: read from a config.yaml)."""
    cls, node = _own(node, frozen)
    # under a `variant` key, so that a type error names the full key
    merged = OmegaConf.merge({"variant": OmegaConf.structured(cls)}, {"variant": node})
    return OmegaConf.to_object(merged.variant)
