"""One M1 for many runs (`init.cache=true`): the init SFT's output kept in `$SELFREWARD_CACHE/m1/<key>`,
the key hashing everything the training reads (the rendered init examples, the base checkpoint's
files, the init, train, lora, model and launch settings, the init seed). A sweep over arms, and with
`init.seed` set over run seeds too, trains M1 once; every other run hard-links it (copies across
filesystems) and records where it came from in its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from selfreward.rundir import RunDir, atomic_dir, write_json
from selfreward.schema import Config


def key(cfg: Config, rd: RunDir) -> str:
    from selfreward.testbed_constraints import model_key
    from selfreward.train.common import init_seed
    from selfreward.train.sft import init_examples

    what = {"examples": init_examples(cfg)[0], "base": model_key(rd.base(cfg)), "seed": init_seed(cfg),
            "init": {k: v for k, v in asdict(cfg.init).items() if k != "cache"},
            "train": {k: v for k, v in asdict(cfg.train).items() if k not in ("report_to", "verify_checkpoints")},
            "lora": asdict(cfg.lora), "model": asdict(cfg.model), "launch": cfg.launch.accelerate_config}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def path(cfg: Config, rd: RunDir) -> Path:
    from selfreward.models import user_cache

    return user_cache() / "m1" / key(cfg, rd)


def _link_tree(src: Path, dst: Path) -> None:
    for f in src.rglob("*"):
        target = dst / f.relative_to(src)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def restore(cfg: Config, rd: RunDir) -> Path | None:
    """Put the cached M1 for these settings into the run (and mark the init done); None: not cached."""
    cached = path(cfg, rd)
    if not (cached / "entry.json").is_file():
        return None
    from selfreward.data import seed_path

    entry = json.loads((cached / "entry.json").read_text())
    entry.pop("inputs")
    with atomic_dir(rd.model(None)) as tmp:
        _link_tree(cached / "model", tmp)
    inputs = [seed_path(cfg.data.ift_path, "ift"), seed_path(cfg.data.eft_path, "eft"), rd.base(cfg)]  # sft's
    rd.mark_done(None, "init", inputs, **{**entry, "seconds": 0.0, "cached_from": str(cached)})
    return cached


def store(cfg: Config, rd: RunDir) -> Path:
    """Keep this run's freshly trained M1 in the cache."""
    cached = path(cfg, rd)
    entry = dict(rd.manifest(None)["init"])
    for k in ("finished_at", "config_sha256", "outputs"):
        entry.pop(k, None)
    with atomic_dir(cached) as tmp:
        _link_tree(rd.model(None), tmp / "model")
        write_json(tmp / "entry.json", entry)
    return cached
