"""The GPU check: generation and a DPO update at real model shapes on one GPU, no download, no internet.

    python benchmarks/gpu.py --wheels wheels/ --out gpu.json     # one GPU, under 10 minutes
    python benchmarks/gpu.py --dry-run --out /tmp/gpu.json        # the same code on CPU at a toy shape

For each shape (Qwen2.5-0.5B, Qwen2.5-1.5B; random weights built from the config, so nothing is
fetched) it measures
- HF generation in bf16 through our seeded top-p sampler (64 rows, 256 prompt tokens, 256 new):
  tokens/s against the bf16 matmul bound at the same rows (`benchmarks.real.matmul_bound`), and
  peak memory against weights + KV cache + logits;
- our DPO update stage (`selfreward.train.dpo`, bf16 over fp32 master weights) under DeepSpeed ZeRO-2
  through `accelerate launch`: seconds, and peak memory against the 16 bytes a parameter of model
  states plus the reference model that docs/real-models.md counts.
It writes JSON: {"device", "torch", "shapes": {name: {"generation": {...}, "dpo": {...}}}}.

A GPU machine may have only torch and transformers: `--wheels DIR` installs what is missing (trl,
deepspeed, datasets, omegaconf, hydra-core, peft, accelerate) from wheels carried in DIR, offline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = {"trl": "trl", "deepspeed": "deepspeed", "datasets": "datasets", "omegaconf": "omegaconf",
          "hydra": "hydra-core", "peft": "peft", "accelerate": "accelerate", "rich": "rich"}
# Published shapes (config.json of each model); the vocabulary is the real one, so the logits are too.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
DRY = {"toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=2048, tie_word_embeddings=True)}
GiB = 2**30


def ensure_dependencies(wheels: Path | None) -> None:
    missing = [pkg for module, pkg in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing and wheels is None:
        sys.exit(f"missing {', '.join(missing)}: pass --wheels DIR with their wheels (pip download them elsewhere)")
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing],
                       check=True)
    sys.path.insert(0, str(ROOT))


def build(shape: dict, out: Path, dtype) -> Path:
    """A random-initialized Qwen2 of `shape` with the tiny recipe's tokenizer (its ids fit any of these
    vocabularies), saved as a checkpoint our stages load."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from selfreward.data import load_seed
    from selfreward.tiny import build_tokenizer

    tokenizer = build_tokenizer([r["instruction"] + " " + r["response"] for r in load_seed(None, "ift")], 1000)
    config = Qwen2Config(**shape, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def generation(path: Path, device: str, rows: int, prompt_len: int, new: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessorList

    from benchmarks.real import matmul_bound
    from selfreward.generation.sampling import SeededSampling

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(device).eval()
    cfg = model.config
    ids = torch.randint(10, 1000, (rows, prompt_len), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model.generate(ids[:, :8], max_new_tokens=4, do_sample=False)  # warm up
        start = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                       do_sample=False, logits_processor=LogitsProcessorList([SeededSampling(list(range(rows)), 0.8, 0.95)]))
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    bound = matmul_bound(model, rows)
    params = sum(p.numel() for p in model.parameters())
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * rows * (prompt_len + new) * 2
    expected = 2 * params + kv + rows * cfg.vocab_size * 4 * 2  # weights, KV cache, a step's fp32 logits and scores
    return {"rows": rows, "prompt_tokens": prompt_len, "new_tokens": new, "seconds": round(seconds, 2),
            "tokens_per_s": round(rows * new / seconds), "matmul_bound_tokens_per_s": round(bound),
            "share_of_bound": round(rows * new / seconds / bound, 3), "parameters": params,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / GiB, 2) if device == "cuda" else None,
            "expected_memory_gib": round(expected / GiB, 4)}


def dpo(path: Path, work: Path, dry_run: bool, params: int) -> dict:
    """Our DPO update stage on 16 pairs, launched as `selfreward run` launches it, ZeRO-2 on one process."""
    import yaml

    from selfreward.config import compose, to_yaml
    from selfreward.data import load_seed
    from selfreward.files import write_jsonl
    from selfreward.rundir import RunDir

    run_dir = work / "run"
    launch = yaml.safe_load((ROOT / "launch" / ("cpu_zero2.yaml" if dry_run else "gpu_zero2.yaml")).read_text())
    launch["num_processes"] = 1
    (work / "zero2.yaml").write_text(yaml.safe_dump(launch))
    cfg = compose(["recipe=tiny", f"model.name_or_path={path}", "init.skip=true", f"run_dir={run_dir}",
                   f"train.precision={'fp32' if dry_run else 'bf16_mixed'}", "train.per_device_batch_size=4",
                   f"launch.accelerate_config={work / 'zero2.yaml'}"])
    rd = RunDir(run_dir)
    seed = load_seed(None, "ift")
    write_jsonl(rd.output(1, "pairs"), [{"prompt_id": f"p{i}", "prompt": r["instruction"], "chosen": r["response"],
                                          "rejected": seed[i + 1]["response"]} for i, r in enumerate(seed[:16])])
    (rd.root / "config.yaml").write_text(to_yaml(cfg))
    report = work / "dpo_memory.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(work / "zero2.yaml"),
                    __file__, "--dpo-stage", str(run_dir), "--report", str(report)], check=True,
                   env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    seconds = time.perf_counter() - start
    measured = json.loads(report.read_text())
    # model states under ZeRO-2 on one GPU: bf16 weights 2 + grads 2 + fp32 master 4 + Adam 8 bytes a
    # parameter, and the reference model in fp32 (4)
    return {"seconds": round(seconds, 1), "train_seconds": measured["train_seconds"], "pairs": 16,
            "peak_memory_gib": measured["peak_memory_gib"], "expected_memory_gib": round(20 * params / GiB, 4)}


def dpo_stage(run_dir: str, report: Path) -> None:
    """Inside `accelerate launch`: run the stage, then write this rank's peak memory."""
    import torch

    from selfreward.train import dpo

    start = time.perf_counter()
    dpo.main(["--run-dir", run_dir, "--round", "1"])
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        report.write_text(json.dumps({
            "train_seconds": round(seconds, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / GiB, 2) if torch.cuda.is_available() else None}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, a toy shape, a few tokens: checks the script runs")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels for what this machine lacks")
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--dpo-stage", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ensure_dependencies(args.wheels)
    if args.dpo_stage:
        dpo_stage(args.dpo_stage, args.report)
        return 0
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: use --dry-run on a machine without a GPU")
    rows, prompt_len, new = (4, 16, 8) if args.dry_run else (64, 256, 256)
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, "shapes": {}}
    for name, shape in (DRY if args.dry_run else SHAPES).items():
        with tempfile.TemporaryDirectory(prefix=f"selfreward-gpu-{name}-") as tmp:
            print(f"{name}: building", file=sys.stderr, flush=True)
            path = build(shape, Path(tmp) / "model", torch.float32)
            print(f"{name}: generation", file=sys.stderr, flush=True)
            gen = generation(path, device, rows, prompt_len, new)
            print(f"{name}: DPO under ZeRO-2", file=sys.stderr, flush=True)
            result["shapes"][name] = {"generation": gen, "dpo": dpo(path, Path(tmp), args.dry_run, gen["parameters"])}
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # what finished survives a later failure
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
