"""The run's configuration: recipes in `recipes/` composed by Hydra against the typed schema
(`selfreward.schema`), then validated for what the types alone cannot say (`selfreward.validation`).

The orchestrator composes once (`compose`) and freezes the result to `<run_dir>/config.yaml`; every
subprocess (generation worker, `accelerate launch` trainers) reads that file back with `load_frozen`
and never composes again, so several ranks never re-resolve the config.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import typing
from enum import Enum
from pathlib import Path

from omegaconf import MISSING, OmegaConf, open_dict

from selfreward.errors import ConfigError
from selfreward.resources import RECIPES_DIR
from selfreward.rundir import CONFIG_HEADER
from selfreward.schema import Config, VariantConfig
from selfreward.validation import readable, validate
from selfreward.variants import REGISTRY
from selfreward.variants import lookup as lookup_variant

# Config groups: a directory in recipes/ whose files set one sub-tree (`update=sft`).
GROUPS = ("update", "judge", "variant")
SCHEMA_NAME = "selfreward_schema"


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    # `variant` is an open section while recipes compose: its keys depend on the variant it names
    # (`selfreward.variants.settings` checks them once composed)
    node = OmegaConf.structured(Config)
    with open_dict(node):
        node.variant = OmegaConf.create({"name": "base"})
    ConfigStore.instance().store(name=SCHEMA_NAME, node=node)


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_summaries() -> list[tuple[str, str]]:
    """(recipe, the first sentence of its header comment) for every recipe."""
    out = []
    for name in recipes():
        header = []
        for line in (RECIPES_DIR / f"{name}.yaml").read_text().splitlines():
            if not line.startswith("#") or not line.strip("# "):
                break
            header.append(line.strip("# "))
        text = " ".join(header)
        out.append((name, text.split(". ")[0].rstrip(".") + "." if text else ""))
    return out


def explain(prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) of every schema key under `prefix`, from the dataclasses' metadata."""
    rows = []

    def walk(cls, path: str, only=None, note: str = "") -> None:
        for f in dataclasses.fields(cls):
            key = f"{path}{f.name}"
            if only is not None and f.name not in only:
                continue
            if key == "variant":  # the settings every variant has, then each variant's own
                walk(VariantConfig, "variant.")
                common = _defaults(VariantConfig)
                for name, variant in sorted(REGISTRY.items()):
                    own = {k for k, v in _defaults(variant).items()
                           if k not in common or (k != "name" and common[k] != v)}
                    walk(variant, "variant.", own, f"variant={name}: ")
                continue
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, key + ".")
                continue
            default = _default(f)
            default = default.value if isinstance(default, Enum) else default
            kind = _type_name(hint) + (f" in {f.metadata['interval']}" if "interval" in f.metadata else "")
            if key.startswith(prefix):
                rows.append((key, kind, "???" if default is MISSING else repr(default),
                             note + f.metadata.get("help", "")))

    walk(Config, "")
    if not rows:
        raise ConfigError(f"No config key starts with {prefix!r}. Top-level keys: "
                          f"{', '.join(f.name for f in dataclasses.fields(Config))}.")
    return rows


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _defaults(cls) -> dict:
    return {f.name: _default(f) for f in dataclasses.fields(cls)}


def _type_name(hint) -> str:
    if isinstance(hint, type) and issubclass(hint, Enum):
        return " | ".join(e.value for e in hint)
    if typing.get_origin(hint) is typing.Union:
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(hint))
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (RECIPES_DIR / group).glob("*.yaml"))


def _check_override_key(key: str) -> None:
    """Name the bad key, the closest valid one and the valid keys at that level."""
    node = OmegaConf.structured(Config)
    walked: list[str] = []
    for part in key.split("."):
        if not OmegaConf.is_config(node) or part not in node.keys():
            valid = list(node.keys()) if OmegaConf.is_config(node) else []
            where = ".".join(walked) or "the top level"
            hint = difflib.get_close_matches(part, valid, n=1)
            suggestion = f" Did you mean '{'.'.join(walked + hint)}'?" if hint else ""
            raise ConfigError(
                f"Unknown config key '{key}'.{suggestion} Valid keys at {where}: {', '.join(valid)}."
            )
        node = node._get_node(part)
        walked.append(part)


# Command-line words that act on a run instead of configuring it; never stored in config.yaml.
DIRECTIVES = ("restart_from",)


# Settings whose keys are free (any TRL field), and the variant's (they depend on which variant it
# is): set after composition, where new keys are allowed.
FREE_DICTS = ("train.trainer_args", "data.columns")
VARIANT = "variant"


def split_recipe(overrides: list[str]) -> tuple[str, list[str], dict[str, str], dict]:
    """Parse overrides with Hydra's grammar, validate keys and group choices, pull out `recipe=`,
    the DIRECTIVES and the values for FREE_DICTS (key -> parsed value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"Cannot parse overrides: {e}") from None
    recipe, rest, directives, free = "tiny", [], {}, {}
    for text, o in zip(overrides, parsed):
        key = o.key_or_group
        if o.is_sweep_override():
            raise ConfigError(f"'{text}' is a sweep; `selfreward run` takes one value per key.")
        if any(key == d or key.startswith(d + ".") for d in FREE_DICTS) or key.startswith(VARIANT + "."):
            free[key] = o.value()
            continue
        if key == "recipe":
            recipe = o.value()
            if recipe not in recipes():
                raise ConfigError(f"Unknown recipe '{recipe}'. Valid choices for 'recipe': {', '.join(recipes())}.")
            continue
        if key in DIRECTIVES:
            directives[key] = str(o.value())
            continue
        if key == VARIANT and o.value() not in group_options(key):
            lookup_variant(str(o.value()))  # a registered variant with no recipe file: its defaults
            free[f"{VARIANT}.name"] = o.value()
            continue
        if key in GROUPS:
            if o.value() not in group_options(key):
                raise ConfigError(
                    f"Unknown choice '{o.value()}' for '{key}'. Valid choices: {', '.join(group_options(key))}."
                )
        elif not o.is_delete():
            _check_override_key(key)
        rest.append(text)
    return recipe, rest, directives, free


def compose(overrides: list[str]) -> Config:
    """Compose `recipe=<name>` (default tiny) with Hydra overrides into a validated Config."""
    return parse_command(overrides)[0]


def parse_command(overrides: list[str]) -> tuple[Config, dict[str, str]]:
    """Like `compose`, also returning the directives (e.g. restart_from) given on the command line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    recipe, rest, directives, free = split_recipe(overrides)
    _register_schema()
    try:
        with initialize_config_dir(config_dir=str(RECIPES_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=recipe, overrides=rest)
        with open_dict(cfg):
            for key, value in free.items():
                OmegaConf.update(cfg, key, value, merge=False)
        return validate(cfg), directives
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(readable(e)) from None


def to_yaml(cfg: Config) -> str:
    return CONFIG_HEADER + OmegaConf.to_yaml(OmegaConf.structured(cfg))


def load_frozen(run_dir: str | Path) -> Config:
    """Read the resolved config the orchestrator wrote; used by every stage subprocess."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"No frozen config at {path}; start the run with `selfreward run`.")
    # With launch.in_process every stage of a round reads the same file in one process: parse it once.
    return copy.deepcopy(_parse_frozen(path.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=4)
def _parse_frozen(text: str) -> Config:
    return validate(OmegaConf.create(text), frozen=True)
