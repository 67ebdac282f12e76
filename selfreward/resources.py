"""Where the shipped recipes, prompt templates, launch configs and seed data live.

In a wheel they are copied into the package (see pyproject's force-include); in a source checkout or
an editable install they sit at the repository root. Both layouts resolve to the same names.
"""

from __future__ import annotations

from pathlib import Path

from selfreward.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "seed_data"


def _shipped(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"selfreward is installed without its '{name}/' directory")


RECIPES_DIR = _shipped("recipes")
PROMPTS_DIR = _shipped("prompts")
LAUNCH_DIR = _shipped("launch")


def _find(value: str, folder: Path, suffix: str, key: str) -> Path:
    for candidate in (Path(value), folder / value, folder / f"{value}{suffix}"):
        if candidate.is_file():
            return candidate.resolve()
    shipped = ", ".join(sorted(p.name for p in folder.glob(f"*{suffix}")))
    raise ConfigError(f"'{key}': no file '{value}' (give a path or one of: {shipped}).")


def find_prompt(value: str, key: str = "template", suffix: str = ".txt") -> Path:
    return _find(value, PROMPTS_DIR, suffix, key)


def find_launch_config(value: str) -> Path:
    return _find(value, LAUNCH_DIR, ".yaml", "launch.accelerate_config")
