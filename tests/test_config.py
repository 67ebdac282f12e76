import shlex

import pytest

from selfreward.cli import main
from selfreward.config import compose, group_options
from selfreward.errors import ConfigError
from selfreward.schema import Backend, Config, JudgeMethod, Reference, UpdateMethod
from selfreward.validation import _bounded, _interval
from selfreward.variants import REGISTRY
from tests.helpers import selfreward


def test_default_recipe_composes():
    cfg = compose([])
    assert cfg.update.method is UpdateMethod.dpo
    assert cfg.judge.method is JudgeMethod.sampled
    assert cfg.update.reference is Reference.previous
    assert cfg.backend is Backend.hf
    assert cfg.model.name_or_path is None and cfg.run_dir == "runs/tiny"


def test_issue_example_overrides():
    cfg = compose(
        ["recipe=tiny", "update=sft", "rounds=2", "generation.num_candidates=4", "judge.samples=3", "run_dir=/tmp/r"]
    )
    assert cfg.update.method is UpdateMethod.sft
    assert (cfg.rounds, cfg.generation.num_candidates, cfg.judge.samples, cfg.run_dir) == (2, 4, 3, "/tmp/r")


def test_every_group_option_composes_with_the_tiny_recipe():
    # every recipe as shipped: tests/test_real_models.py
    assert group_options("update") == ["dpo", "sft"]
    assert group_options("judge") == ["logprob", "sampled"]
    for update in group_options("update"):
        for judge in group_options("judge"):
            compose(["recipe=tiny", f"update={update}", f"judge={judge}"])


def test_recipe_values_beat_group_defaults_and_cli_beats_both():
    assert compose(["update=dpo"]).update.learning_rate == 1.0e-4  # tiny.yaml sets it after the group
    assert compose(["update=dpo", "update.learning_rate=0.5"]).update.learning_rate == 0.5


@pytest.mark.parametrize(
    "override, words",
    [
        ("judge.sample=3", ["'judge.sample'", "Did you mean 'judge.samples'", "samples"]),
        ("roundz=3", ["'roundz'", "Did you mean 'rounds'"]),
        ("model.tiny.hidden=8", ["'model.tiny.hidden'", "hidden_size"]),
        ("update=ppo", ["'update'", "dpo, sft"]),
        ("judge=pairwise", ["'judge'", "logprob, sampled"]),
        ("recipe=huge", ["'recipe'", "tiny"]),
        ("rounds=abc", ["'rounds'", "Integer"]),
        ("update.reference=best", ["'update.reference'", "previous, initial"]),
        ("backend=tpu", ["'backend'", "hf, vllm"]),
        ("judge.samples=0", ["'judge.samples'", "at least 1"]),
        ("generation.num_candidates=1", ["'generation.num_candidates'", "update=dpo"]),
        ("judge.template=nope.txt", ["'judge.template'", "judge.txt"]),
        ("launch.accelerate_config=zero9", ["'launch.accelerate_config'", "cpu_zero2.yaml"]),
        ("data.ift_path=/no/such.jsonl", ["'data.ift_path'", "/no/such.jsonl"]),
        ("update=dpo,sft", ["sweep"]),
        ("judge.combine=best", ["'judge.combine'", "mean, Score"]),
        ("judge=logprob 'judge.score_names=[Quality,Following]'", ["judge=logprob", "judge=sampled"]),
        ("'pairs.sft_thresholds=[8,7]'", ["'pairs.sft_thresholds'", "one threshold per", "Score"]),
        ("lora.enabled=true lora.merge=false launch.accelerate_config=cpu_zero3", ["lora.merge=false", "ZeRO-3"]),
        ("lora.enabled=true lora.merge=false backend=vllm", ["backend=vllm", "lora.merge=true"]),
        ("lora.enabled=true lora.r=0", ["'lora.r'"]),
        ("launch.generation_processes=2 backend=vllm", ["'launch.generation_processes'", "tensor_parallel_size"]),
        ("launch.in_process=true launch.generation_processes=2", ["'launch.in_process'",
                                                                 "launch.generation_processes=2"]),
        ("launch.in_process=true backend=vllm", ["'launch.in_process'", "backend=vllm"]),
        ("judge.model=/no/such/judge", ["'judge.model'", "/no/such/judge"]),
        ("prompts.evolve=true prompts.evolve_share=0", ["'prompts.evolve_share'"]),
        ("model.chat_template=nope.jinja", ["'model.chat_template'", "plain_chat.jinja"]),
        ("generation.temperature=-1", ["'generation.temperature'", ">= 0"]),
        ("prompts.max_new_tokens=0", ["'prompts.max_new_tokens'", "at least 1"]),
        ("pairs.sft_threshold=99", ["'pairs.sft_threshold'", "judge.max_score=5"]),
        ("judge.template=self_assess.txt 'judge.score_names=[Quality,Following]' judge.max_score=10 "
         "'pairs.sft_thresholds=[8,11]'", ["'pairs.sft_thresholds[1]'", "[0, judge.max_score=10]"]),
        ("generation.top_p=0", ["'generation.top_p'", "(0, 1]"]),
        ("update.beta=0", ["'update.beta'", "> 0"]),
        ("init.max_steps=0", ["'init.max_steps'", "-1 for init.epochs"]),
        ("prompts.min_words=9 prompts.max_words=3", ["'prompts.min_words'", "'prompts.max_words'"]),
    ],
)
def test_bad_override_names_key_and_choices(override, words):
    with pytest.raises(ConfigError) as err:
        compose(shlex.split(override))
    for word in words:
        assert word in str(err.value)


def _just_outside(interval: str, value) -> list:
    """The values next to each end of an interval that it excludes."""
    low_open, low, high, high_open = _interval(interval)
    step = 1 if isinstance(value, int) else 0.01
    below = low if low_open else low - step
    outside = [int(below) if isinstance(value, int) else below]
    if high != float("inf"):
        outside.append(int(high) if high_open else int(high + step) if isinstance(value, int) else high + step)
    return outside


# every bounded key of the schema, and each variant's own under that variant
BOUNDED = [("base", key, interval, bad) for key, interval, value in _bounded(Config(run_dir="r"), "")
           for bad in _just_outside(interval, value)]
BOUNDED += [(name, f"variant.{key}", interval, bad) for name, cls in sorted(REGISTRY.items())
            for key, interval, value in _bounded(cls(), "") if f"variant.{key}" not in {b[1] for b in BOUNDED}
            for bad in _just_outside(interval, value)]


@pytest.mark.parametrize("variant, key, interval, bad", BOUNDED, ids=[f"{k}={b}" for _, k, _, b in BOUNDED])
def test_every_bounded_key_refuses_the_values_next_to_its_interval(variant, key, interval, bad):
    """The schema's intervals are the one list of bounds: each is checked, with a message naming the key."""
    with pytest.raises(ConfigError, match=f"^'{key}' must be .*, got {bad}"):
        compose([f"variant={variant}", f"{key}={bad}"])


def test_the_bounds_cover_what_a_run_would_fail_on_late():
    keys = {key for _, key, _, _ in BOUNDED}
    assert len(keys) >= 40 and {"rounds", "generation.top_p", "judge.max_score", "update.beta", "lora.r",
                                "variant.min_vote_margin", "launch.generation_processes"} <= keys


def test_cli_exit_code_2_and_one_message(capsys):
    assert main(["config", "judge.sample=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown config key 'judge.sample'") and "\n" not in err


def test_cli_subprocess_exit_code_2():
    result = selfreward("run", "update=nope", check=False)
    assert result.returncode == 2
    assert "Valid choices: dpo, sft" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_command_prints_resolved_yaml(capsys):
    assert main(["config", "recipe=tiny", "update=sft", "judge=logprob", "seed=7"]) == 0
    out = capsys.readouterr().out
    assert "seed: 7" in out and "method: sft" in out and "method: logprob" in out


@pytest.mark.parametrize("precision, native, autocast, weights", [
    ("fp32", True, False, "float32"), ("bf16_mixed", False, True, "float32"), ("bf16", False, True, "bfloat16"),
    ("auto", True, True, "float32"), ("auto", False, False, "float32")])
def test_training_precision_choices(tmp_path, monkeypatch, precision, native, autocast, weights):
    """`auto` is bf16_mixed where the hardware computes bf16 natively and fp32 elsewhere; the others
    are what they say on any hardware."""
    import torch
    from trl import DPOConfig

    from selfreward.rundir import RunDir
    from selfreward.train import common

    monkeypatch.setattr(common, "native_bf16", lambda device: native)
    cfg = compose([f"train.precision={precision}", "update.learning_rate=1e-4", f"run_dir={tmp_path}"])
    args = common.trl_config(DPOConfig, cfg, RunDir(tmp_path), 1, "update", 1.0, 1e-4)
    assert args.bf16 is autocast and common.train_dtype(cfg) == getattr(torch, weights)
    assert common.precision(cfg).value == {"auto": "bf16_mixed" if native else "fp32"}.get(precision, precision)


def test_pure_bf16_at_a_small_learning_rate_is_refused():
    with pytest.raises(ConfigError, match="train.precision=bf16_mixed"):
        compose(["train.precision=bf16", "update.learning_rate=1e-6"])
    with pytest.raises(ConfigError, match="Valid choices|fp32, bf16_mixed, bf16"):
        compose(["train.precision=fp16"])
    from selfreward.preflight import checked

    with pytest.raises(ConfigError, match="use train.precision instead"):  # TRL's own switch is ours
        checked(compose(["train.trainer_args={bf16: true}"]))


def test_generation_dtype_auto_uses_bf16_only_where_the_hardware_has_it(monkeypatch):
    import torch

    from selfreward.generation import hf
    from selfreward.schema import GenerationDtype

    monkeypatch.setattr(hf, "native_bf16", lambda device: True)
    assert hf.generation_dtype(GenerationDtype.auto, "cpu") == torch.bfloat16
    monkeypatch.setattr(hf, "native_bf16", lambda device: False)
    assert hf.generation_dtype(GenerationDtype.auto, "cpu") == torch.float32
    assert hf.generation_dtype(GenerationDtype.bf16, "cpu") == torch.bfloat16
    assert hf.generation_dtype(GenerationDtype.fp32, "cuda") == torch.float32
    assert compose(["recipe=tiny"]).generation.dtype is GenerationDtype.fp32  # its figures are fp32's


def test_the_tiny_recipe_keeps_m_t_when_a_round_has_nothing_to_train_on():
    # a random model's judge sometimes separates nothing (the README's sweep at seed 1, round 2): the
    # round keeps M_t and the run goes on, instead of a README command exiting 2
    assert compose(["recipe=tiny"]).pairs.on_too_few.value == "skip"
    assert compose([]).pairs.on_too_few.value == "skip"  # recipe=tiny is the default
