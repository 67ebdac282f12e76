"""Data-parallel HF generation over `launch.generation_processes` ranks started by torchrun (the
launcher `accelerate launch` itself uses; gloo on CPU, NCCL on GPUs, one GPU per rank).

Rank 0 runs the stages exactly as a single process would. Each call it makes on its generator is
broadcast to every rank; each rank generates an interleaved shard of the prompts (shards of similar
length mix, so the ranks finish together) and rank 0 puts the answers back in prompt order. Only
rank 0 reads and writes the run directory; the other ranks only serve `follow()` until told to stop.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from selfreward.generation.base import Sampling, request_seeds
from selfreward.schema import Config


def _dist():
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist


def _rank() -> tuple[int, int]:
    dist = _dist()
    return dist.get_rank(), dist.get_world_size()


def _broadcast(message):
    box = [message]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def _local(cfg: Config, path: str):
    import torch

    from selfreward.generation.hf import HFGenerator  # torch: only in the processes that generate

    rank, _ = _rank()
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    return HFGenerator(path, cfg, device=device, progress=rank == 0)


def _shard(generator, method: str, prompts: list[str], args: tuple) -> list:
    """Run `method` on this rank's shard; return all ranks' results in prompt order. A sampling
    call's per-prompt seeds are sharded with the prompts, so each prompt draws what it would draw
    in one process."""
    rank, world = _rank()
    if method == "generate":
        sampling, *rest = args
        seeds = request_seeds(sampling, len(prompts))[rank::world]
        args = (replace(sampling, seeds=tuple(seeds)), *rest)
    mine = getattr(generator, method)(prompts[rank::world], *args)
    shards: list = [None] * world
    _dist().all_gather_object(shards, mine)
    out: list = [None] * len(prompts)
    for r, shard in enumerate(shards):
        out[r::world] = shard
    return out


class DataParallelGenerator:
    """The rank-0 side: same interface as a single generator."""

    def __init__(self, cfg: Config, path: str):
        _broadcast(("load", path))
        self.local = _local(cfg, path)
        self.tokenizer = self.local.tokenizer

    def generate(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        return self._call("generate", prompts, sampling, desc)

    def next_token_probs(self, prompts: list[str], token_ids: list[int], desc: str = "score") -> list[list[float]]:
        return self._call("next_token_probs", prompts, token_ids, desc)

    def _call(self, method: str, prompts: list[str], *args):
        _broadcast((method, prompts, args))
        return _shard(self.local, method, prompts, args)


def is_follower() -> bool:
    return _rank()[0] != 0


def follow(cfg: Config) -> None:
    """The other ranks: load what rank 0 loads, generate their shard of what it generates."""
    generator = None
    while (message := _broadcast(None)) != ("stop",):
        if message[0] == "load":
            generator = None  # one model in memory at a time
            generator = _local(cfg, message[1])
        else:
            method, prompts, args = message
            _shard(generator, method, prompts, args)
    _shutdown()


def stop_followers() -> None:
    _broadcast(("stop",))
    _shutdown()


def _shutdown() -> None:
    # The barrier keeps rank 0 from closing its connections while a follower is still receiving the
    # stop message.
    dist = _dist()
    dist.barrier()
    dist.destroy_process_group()


def exit_now(code: int) -> None:
    """End a rank without the interpreter's teardown. After `_shutdown` a rank has nothing left to
    write, but tearing down with gloo's threads still alive aborted a rank now and then in CI
    ("terminate called without an active exception", SIGABRT), failing a stage whose work was done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
