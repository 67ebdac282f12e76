"""The values a config key can take: each choice key's enum and the fixed lists `selfreward.validation`
checks against (`selfreward.schema` types its fields with them)."""

from __future__ import annotations

from enum import Enum


class UpdateMethod(str, Enum):
    dpo = "dpo"
    sft = "sft"


class JudgeMethod(str, Enum):
    sampled = "sampled"
    logprob = "logprob"
    oracle = "oracle"  # recipe=testbed only: the checker scores (the ceiling, not self-rewarding)


class Reference(str, Enum):
    previous = "previous"  # M_t, the paper's choice
    initial = "initial"  # M_1


class OnProblem(str, Enum):
    stop = "stop"
    warn = "warn"
    skip = "skip"  # pairs.on_too_few only: keep M_t as M_{t+1}


class Precision(str, Enum):
    fp32 = "fp32"  # fp32 weights and compute
    bf16_mixed = "bf16_mixed"  # fp32 master weights, bf16 compute (autocast; DeepSpeed's bf16 mode)
    bf16 = "bf16"  # bf16 weights and compute: no fp32 copy, small updates round away
    auto = "auto"  # bf16_mixed where the GPU or CPU computes bf16 natively, else fp32 (resolved per process)


class GenerationDtype(str, Enum):
    auto = "auto"  # bf16 where the GPU or CPU computes it natively (CUDA bf16, AMX / AVX512-BF16), else fp32
    fp32 = "fp32"
    bf16 = "bf16"


class Backend(str, Enum):
    hf = "hf"
    vllm = "vllm"


INIT_DATA = ("ift+eft", "eft", "ift")
# The testbed's task families (`selfreward.testbed.TASKS` implements each one).
TESTBED_TASKS = ("reverse", "sort", "count", "add", "pair")
# testbed.family=constraints: the instruction-following types of `selfreward.constraints.FAMILY`
CONSTRAINT_TYPES = ("max_words", "min_words", "include_keyword", "exclude_keyword", "keyword_frequency", "no_commas",
                    "lowercase", "uppercase", "bullets", "paragraphs", "title", "end_phrase", "postscript", "quotes",
                    "json")
# The testbed's frozen held-out generators (`selfreward.testbed.HELDOUT_WRONG` implements each one).
HELDOUT_VERSIONS = (1,)


class TestbedFamily(str, Enum):
    strings = "strings"  # recipe=testbed: string tasks, a from-scratch 1.1M model
    constraints = "constraints"  # recipe=testbed_smollm2: instruction-following constraints, a real model
