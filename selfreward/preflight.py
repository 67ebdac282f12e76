"""Every check that can fail before any work, so bad input stops a run with nothing written:
seed files, templates, tokenizers and chat templates, init examples that training would cut, vLLM,
and TRL's own settings (`train.trainer_args`)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

from selfreward import models, testbed
from selfreward.checkpoint import load_tokenizer
from selfreward.data import load_seed, seed_texts
from selfreward.errors import ConfigError
from selfreward.judge import judge_template
from selfreward.round import StageName
from selfreward.rundir import RunDir
from selfreward.schema import Backend, Config
from selfreward.templates import Template, chat_prompt
from selfreward.tiny import build_tokenizer
from selfreward.validation import VLLM_MISSING


def checked(cfg: Config) -> tuple[Config, RunDir]:
    """What `run` checks before any work, shared by `selfreward config`: the run directory is one (or
    new), the testbed's data paths attached, then `preflight`. Returns the config the stages will use."""
    if cfg.model.name_or_path:  # a known model by name: fetched once into the user cache
        cfg = replace(cfg, model=replace(cfg.model, name_or_path=models.resolve(cfg.model.name_or_path)))
    rd = RunDir(cfg.run_dir)
    if cfg.testbed.enabled:
        cfg = testbed.attach(cfg, rd)
    rd.check_is_run_dir()
    preflight(cfg, rd)
    return cfg, rd


def preflight(cfg: Config, rd: RunDir) -> None:
    """Check every input before any work, so bad input stops the run with nothing written."""
    if not cfg.testbed.enabled:  # the testbed writes its data itself (and checks it once written)
        load_seed(cfg.data.ift_path, "ift", cfg.data.columns)
        load_seed(cfg.data.eft_path, "eft", cfg.data.columns)
    Template(cfg.prompts.template, ("examples",), key="prompts.template")
    judge_template(cfg.judge)
    if cfg.prompts.evolve:
        Template(cfg.prompts.evolve_template, ("instruction",), key="prompts.evolve_template")
    writer = None if cfg.prompts.model in ("current", "initial") else cfg.prompts.model
    for key, path in (("model.name_or_path", cfg.model.name_or_path), ("judge.model", cfg.judge.model),
                      ("prompts.model", writer)):
        if path is not None:
            check_tokenizer(cfg, key, path)
    if cfg.backend is Backend.vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError(VLLM_MISSING)
    if not cfg.testbed.enabled:
        check_init_lengths(cfg, rd)
    if cfg.train.trainer_args:
        from selfreward.train.common import check_trainer_args  # TRL and transformers: only when needed

        check_trainer_args(cfg, rd)


def check_init_lengths(cfg: Config, rd: RunDir) -> None:
    """Every init example must fit what training keeps, measured with the tokenizer M1 will have:
    the user's checkpoint's, or the tiny model's (built here in memory when it is not saved yet)."""
    from selfreward.train.sft import check_init_lengths as check  # TRL and transformers: only when needed

    if cfg.init.skip or rd.is_done(None, StageName.init):
        return
    if cfg.model.name_or_path:
        from transformers import AutoConfig

        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg)
        model_config = AutoConfig.from_pretrained(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
        context = getattr(model_config, "max_position_embeddings", None)
    else:
        tokenizer = (load_tokenizer(rd.base_model, cfg) if rd.base_model.is_dir()
                     else build_tokenizer(seed_texts(cfg), cfg.model.tiny.vocab_size))
        context = cfg.model.tiny.max_position_embeddings
    check(cfg, tokenizer, context)


def check_tokenizer(cfg: Config, key: str, path: str) -> None:
    try:
        tokenizer = load_tokenizer(path, cfg)
    except (OSError, ValueError) as e:
        raise ConfigError(f"'{key}': cannot load a tokenizer from {path!r} ({e})") from None
    chat_prompt(tokenizer, "check")  # raises, saying how to set a chat template


