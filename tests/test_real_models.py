"""Real-model machinery on the tiny model: recipes, launch configs, LoRA, the Slurm launcher,
data-parallel generation, multi-score self-assessment with a fixed judge, prompt evolution."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from selfreward.checkpoint import adapter_base, is_adapter, load_causal_lm, merge_adapter, set_adapter_base
from selfreward.config import compose, recipes, to_yaml
from selfreward.files import read_jsonl, write_jsonl
from selfreward.prompts import evolve_prompts
from selfreward.resources import LAUNCH_DIR, RECIPES_DIR
from selfreward.rundir import RunDir
from tests.helpers import SMALL, selfreward
from tests.test_loop import check_round

REPO = Path(__file__).resolve().parents[1]


# -- recipes and launch configs (no model loading) ----------------------------------------------


@pytest.mark.parametrize("recipe", recipes())
def test_every_recipe_composes_validates_and_says_how_to_launch_it(recipe):
    cfg = compose([f"recipe={recipe}"])
    header = (RECIPES_DIR / f"{recipe}.yaml").read_text().split("defaults:")[0]
    assert f"recipe={recipe}" in header and ("selfreward run" in header or "sbatch" in header)
    assert "Hardware:" in header
    if recipe not in ("tiny", "testbed"):  # the two CPU recipes build their own model
        # a real checkpoint: bf16 compute over fp32 master weights on GPUs; the SmolLM2 recipes run on
        # CPUs too, where bf16 is fast only with AMX / AVX512-BF16 (auto: fp32 elsewhere)
        precision = "auto" if recipe.endswith("smollm2") else "bf16_mixed"
        assert cfg.model.name_or_path and cfg.train.precision.value == precision


def test_paper_recipe_settings():
    srlm = compose(["recipe=srlm_llama2_70b"])
    assert (srlm.generation.num_candidates, srlm.judge.samples, srlm.update.beta) == (4, 3, 0.1)
    # the paper trains M2 and M3 from M1: two self-rewarding rounds
    assert (srlm.update.learning_rate, srlm.rounds, srlm.update.reference.value) == (1e-6, 2, "previous")
    assert srlm.init.data == "ift+eft" and compose(["recipe=srlm_llama3_8b"]).init.data == "eft"
    # the paper's prompt writer: a fixed Llama-2-Chat-70B, 8-shot, T = 0.6, top-p 0.9
    assert (srlm.prompts.model, srlm.prompts.num_shots, srlm.prompts.temperature, srlm.prompts.top_p) == (
        "meta-llama/Llama-2-70b-chat-hf", 8, 0.6, 0.9)
    header = (RECIPES_DIR / "srlm_llama2_70b.yaml").read_text().split("defaults:")[0]
    assert "What it follows:" in header and "Where it departs:" in header and "6 seed prompts and 2" in header
    isheep = compose(["recipe=isheep_qwen"])
    assert isheep.update.method.value == "sft" and isheep.judge.score_names == ["Quality", "Following"]
    assert isheep.init.data == "ift"


def _accelerate_keys() -> tuple[set, set]:
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    top = {f.name for f in dataclasses.fields(ClusterConfig)}
    return top, {a.dest for a in launch_command_parser()._actions}


@pytest.mark.parametrize("path", sorted(LAUNCH_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_launch_yaml_names_only_keys_accelerate_knows(path):
    from accelerate.commands.config.config_args import ClusterConfig

    top, launch_args = _accelerate_keys()
    config = yaml.safe_load(path.read_text())
    assert set(config) <= top, set(config) - top
    assert set(config.get("deepspeed_config", {})) <= launch_args
    ClusterConfig.from_yaml_file(str(path))  # accelerate's own loader accepts it


def test_slurm_scripts_are_valid_bash_and_their_launcher_override_parses(tmp_path):
    for script in ("slurm.sbatch", "slurm_node.sh"):
        subprocess.run(["bash", "-n", str(LAUNCH_DIR / script)], check=True)
    from selfreward.loop import launcher
    from selfreward.round import StageName, row

    srun = "srun --nodes=2 --ntasks-per-node=1 --overlap bash launch/slurm_node.sh launch/multinode_zero3.yaml"
    cfg = compose(["recipe=srlm_llama2_70b", f"launch.launcher='{srun}'", f"run_dir={tmp_path}"])
    args = ["--run-dir", str(tmp_path), "--round", "2", "--stage", "update"]
    cmd = launcher(cfg, row(StageName.update)).command("selfreward.train.dpo", args)
    assert cmd == [*srun.split(), "-m", "selfreward.train.dpo", *args]


def test_vllm_backend_without_vllm_exits_2_before_any_work(tmp_path):
    pytest.importorskip("torch")
    if __import__("importlib.util").util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    result = selfreward("run", "backend=vllm", "launch.in_process=false", f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "pip install 'selfreward[vllm]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
    # the tiny recipe runs generation in process, which vLLM cannot: the missing package is named first
    result = selfreward("run", "recipe=tiny", "backend=vllm", f"run_dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    assert -1 < result.stderr.find("pip install 'selfreward[vllm]'") < result.stderr.find("launch.in_process=false")


# -- prompt evolution ------------------------------------------------------------------------------


class CannedGenerator:
    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.requests = tokenizer, replies, []

    def generate(self, prompts, sampling, desc=""):
        self.requests += prompts
        return [[self.replies[i % len(self.replies)]] for i in range(len(prompts))]


def test_evolve_rewrites_a_share_and_keeps_originals_it_cannot_use(tiny_checkpoint):
    from transformers import AutoTokenizer

    records = [{"id": f"p{i:05d}", "prompt": f"Name a fruit that is color {i}"} for i in range(4)]
    replies = ["Name three fruits that are red and explain why each is red.", "", "Name a fruit that is color 3"]
    gen = CannedGenerator(AutoTokenizer.from_pretrained(tiny_checkpoint), replies)
    cfg = compose(["prompts.evolve=true", "prompts.evolve_share=0.75"]).prompts
    out, stats = evolve_prompts(gen, cfg, records, seed=0)
    assert len(gen.requests) == 3 and all("Rewrite the task below" in r for r in gen.requests)
    assert stats == {"evolved": 1, "evolve_kept_original": 2}  # one empty reply, one duplicate
    evolved = [r for r in out if "evolved_from" in r]
    assert len(evolved) == 1 and evolved[0]["prompt"].startswith("Name three fruits")
    assert [r["id"] for r in out] == [r["id"] for r in records]


# -- LoRA: loading, merging, the adapter-disabled reference ----------------------------------------


def _random_adapter(model_path, out_dir, seed):
    """A LoRA adapter on `model_path` with non-zero weights, saved as a round's model folder is."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    lora = compose(["lora.enabled=true", "lora.r=4"]).lora
    from selfreward.checkpoint import peft_config

    model = get_peft_model(load_causal_lm(model_path, torch.float32), peft_config(lora))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)  # B starts at zero: make the adapter change the model
    model.save_pretrained(out_dir)
    set_adapter_base(out_dir, model_path)
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_adapter_chain_loads_merged_and_merges_to_the_same_weights(tiny_checkpoint, tmp_path):
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    first = _random_adapter(tiny_checkpoint, tmp_path / "round_1", seed=1)
    expected_1 = _logits(first, ids)
    assert is_adapter(tmp_path / "round_1") and adapter_base(tmp_path / "round_1") == str(tiny_checkpoint.resolve())
    # loaded merged: equal up to float32 rounding of the merge (observed ~2e-5 on logits of size ~3)
    assert torch.allclose(_logits(load_causal_lm(tmp_path / "round_1", torch.float32), ids), expected_1, atol=1e-4)
    assert not torch.allclose(_logits(load_causal_lm(tiny_checkpoint, torch.float32), ids), expected_1, atol=1e-3)
    # round 2's adapter sits on round 1's adapter: the loader follows the chain
    second = _random_adapter(tmp_path / "round_1", tmp_path / "round_2", seed=2)
    expected_2 = _logits(second, ids)
    assert torch.allclose(_logits(load_causal_lm(tmp_path / "round_2", torch.float32), ids), expected_2, atol=1e-4)
    merge_adapter(tmp_path / "round_2", tmp_path / "merged", torch.float32)
    assert not is_adapter(tmp_path / "merged")
    assert torch.allclose(_logits(load_causal_lm(tmp_path / "merged", torch.float32), ids), expected_2, atol=1e-4)


def test_lora_dpo_reference_is_the_starting_model_with_the_adapter_disabled(run_from_init):
    from selfreward.train.dpo import build_trainer

    run_dir = run_from_init()
    pairs = [{"prompt": f"What is {a} plus {a}?", "chosen": f"{2 * a}.", "rejected": "I do not know."}
             for a in range(4)]
    write_jsonl(run_dir / "round_1" / "pairs.jsonl", pairs)

    def trainer_for(*overrides):
        cfg = compose([*SMALL, f"run_dir={run_dir}", *overrides])
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        return build_trainer(cfg, RunDir(run_dir), 1, "update")[0]

    lora = trainer_for("lora.enabled=true", "lora.r=4")
    full = trainer_for()  # no LoRA: the reference is a second copy of M1
    assert lora.ref_model is None and full.ref_model is not None
    precomputed = trainer_for("update.precompute_ref=true")  # reference log-probs once, then no copy
    assert precomputed.ref_model is None and "ref_chosen_logps" in precomputed.train_dataset.column_names
    for name, p in lora.model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)  # as after some training: the policy now differs from M1
    batch = next(iter(lora.get_train_dataloader()))
    with_adapter_off = lora.compute_ref_log_probs(lora.model, batch)
    reference = full.compute_ref_log_probs(full.model, batch)
    for a, b in zip(with_adapter_off, reference):
        assert torch.allclose(a, b, atol=1e-4)
    mask = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        assert not torch.allclose(lora.model(**mask).logits, full.ref_model(**mask).logits, atol=1e-3)


# -- integration: real rounds ----------------------------------------------------------------------


def _fake_slurm(bin_dir: Path) -> dict:
    """`srun` runs its command once (one node), `scontrol` names this host: enough for slurm_node.sh."""
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho localhost\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    path = f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "n1",
            "GPUS_PER_NODE": "2", "MAIN_PORT": "29731"}


@pytest.mark.slow
def test_lora_dpo_rounds_unmerged_under_zero2_through_the_slurm_launcher(run_from_init, tmp_path):
    run_dir = run_from_init()
    launcher = f"srun --ntasks-per-node=1 bash {LAUNCH_DIR / 'slurm_node.sh'} {LAUNCH_DIR / 'cpu_zero2.yaml'}"
    args = ["run", "recipe=tiny", *SMALL, "rounds=2", "eval.enabled=false", "lora.enabled=true", "lora.r=4",
            "lora.merge=false", "update.learning_rate=1e-3", f"launch.launcher='{launcher}'", f"run_dir={run_dir}"]
    result = subprocess.run([sys.executable, "-m", "selfreward", *args], capture_output=True, text=True,
                            env=_fake_slurm(tmp_path / "bin"))
    assert result.returncode == 0, result.stderr[-4000:]
    rd = RunDir(run_dir)
    for t in (1, 2):
        update = rd.manifest(t)["update"]
        assert (update["world_size"], update["deepspeed_zero_stage"]) == (2, 2)  # accelerate, via slurm_node.sh
        assert is_adapter(rd.model(t)) and not (rd.model(t) / "model.safetensors").exists()
    assert adapter_base(rd.model(1)) == str(rd.model(None).resolve())
    assert adapter_base(rd.model(2)) == str(rd.model(1).resolve())
    # round 2 generated with, and trained from, round 1's adapter (loaded on M1 and merged)
    assert str(rd.model(1)) in json.dumps(rd.manifest(2)["candidates"]) and rd.manifest(2)["update"]
    ids = torch.tensor([[5, 17, 42, 8]])
    m1, m2, m3 = (_logits(load_causal_lm(rd.model(t), torch.float32), ids) for t in (None, 1, 2))
    assert not torch.allclose(m1, m2, atol=1e-4) and not torch.allclose(m2, m3, atol=1e-4)


def _two_score_eft(path: Path) -> None:
    """The shipped EFT data with I-SHEEP-style judgments: two scores on 0-10 instead of one on 0-5."""
    rows = read_jsonl(REPO / "selfreward" / "seed_data" / "seed_eft.jsonl")
    for r in rows:
        s = int(r["score"])
        r["judgment"] = f"Quality: {2 * s}\nFollowing: {min(10, 2 * s + len(r['response']) % 3)}"
    write_jsonl(path, rows)


@pytest.mark.slow
def test_isheep_round_fixed_two_score_judge_and_lora_sft(run_from_init, tmp_path):
    """A different tiny checkpoint trained on two-score judgments judges (judge.model); the SFT filter
    keeps exactly the candidates whose both scores clear their thresholds; LoRA SFT under ZeRO-2, saved
    merged, loads for the next round. (This is also the suite's SFT round under `accelerate launch`.)"""
    two_score = ["judge.template=self_assess.txt", "judge.score_names=[Quality,Following]", "judge.max_score=10"]
    _two_score_eft(tmp_path / "eft.jsonl")
    judge_run = tmp_path / "judge"
    selfreward("run", "recipe=tiny", *SMALL, *two_score, f"data.eft_path={tmp_path / 'eft.jsonl'}", "rounds=0",
               "launch.accelerate_config=null", f"run_dir={judge_run}")
    judge_model = judge_run / "init" / "model"

    run_dir = run_from_init()
    selfreward("run", "recipe=tiny", *SMALL, *two_score, "update=sft", f"judge.model={judge_model}",
               "pairs.sft_thresholds=[4,3]", "lora.enabled=true", "lora.r=4", "update.learning_rate=1e-3",
               "rounds=1", "launch.accelerate_config=cpu_zero2", f"run_dir={run_dir}")
    rd = RunDir(run_dir)
    check_round(run_dir, 1, "sft.jsonl")  # every file of the run-directory contract, weights changed
    judged = read_jsonl(rd.output(1, "judge"))
    # the fixed judge judged: its inputs name it, and its texts have its format, not M1's "Score:"
    assert str(judge_model) in json.dumps(rd.manifest(1)["judge"]["inputs"])
    texts = [j for r in judged for j in r["judgments"]]
    assert not any("Score:" in j for j in texts) and sum("Quality:" in j for j in texts) > len(texts) / 2
    assert json.loads((rd.round_dir(1) / "eval.json").read_text())["judge"]["model"] == str(judge_model)
    # the filter needs both scores: fewer candidates than either score alone would keep
    ids = {name: {(r["prompt_id"], r["candidate_id"]) for r in judged if (r["named_scores"][name] or -1) >= th}
           for name, th in (("Quality", 4), ("Following", 3))}
    kept = {(r["prompt_id"], r["candidate_id"]) for r in read_jsonl(rd.round_dir(1) / "sft.jsonl")}
    assert kept and kept == ids["Quality"] & ids["Following"]
    assert len(kept) < min(len(ids["Quality"]), len(ids["Following"])), ids
    assert all(r["score"] == pytest.approx(sum(r["named_scores"].values()) / 2) for r in judged if r["score"])
    # LoRA SFT under ZeRO-2, saved merged: a plain checkpoint the next round's generator loads as is
    update = rd.manifest(1)["update"]
    assert (update["world_size"], update["deepspeed_zero_stage"], update["records"]) == (2, 2, len(kept))
    assert not is_adapter(rd.model(1)) and (rd.model(1) / "model.safetensors").is_file()
    from selfreward.generation import load_generator

    nxt = load_generator(compose([*SMALL, f"run_dir={run_dir}"]), rd.policy(compose([f"run_dir={run_dir}"]), 2))
    ids_in = torch.tensor([[5, 17, 42, 8]])
    assert not torch.allclose(_logits(nxt.model, ids_in), _logits(load_causal_lm(rd.model(None), torch.float32),
                                                                     ids_in), atol=1e-4)


@pytest.mark.slow
def test_data_parallel_generation_matches_one_process(run_from_init):
    """Sampled prompts and answers and logprob judgments from 2 torchrun ranks equal one process's:
    each prompt draws from its own seeded stream, whichever rank samples it."""
    sampled = [*SMALL, "update=sft", "judge=logprob"]
    outputs = []
    for n in (1, 2):
        run_dir = run_from_init(f"dp{n}")
        cfg = compose([*sampled, "launch.in_process=false", f"launch.generation_processes={n}",
                       f"run_dir={run_dir}"])
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if n == 2 else []
        done = subprocess.run([sys.executable, *launch, "-m", "selfreward.stages", "--run-dir", str(run_dir),
                               "--round", "1", "prompts", "candidates", "judge"], capture_output=True, text=True)
        assert done.returncode == 0, f"{n} process(es) exited {done.returncode}:\n{done.stderr[-4000:]}"
        outputs.append([read_jsonl(RunDir(run_dir).output(1, s)) for s in ("prompts", "candidates", "judge")])
        shutil.rmtree(run_dir / "base_model")
    (p1, c1, j1), (p2, c2, j2) = outputs
    assert p1 == p2 and c1 == c2 and len(c1) >= 9
    assert len({c["response"] for c in c1}) > len(c1) // 2  # sampled, not greedy copies
    assert [j["score"] for j in j1] == pytest.approx([j["score"] for j in j2], abs=1e-4)


def test_prompts_model_picks_who_writes_the_prompts(tmp_path):
    from selfreward.errors import ConfigError
    from selfreward.rundir import RunDir

    rd = RunDir(tmp_path)
    for setting, round_2 in (("current", rd.model(1)), ("initial", rd.model(None)), ("org/writer", "org/writer")):
        cfg = compose([f"prompts.model={setting}", f"run_dir={tmp_path}"])
        assert rd.stage_model(cfg, 2, "prompts") == str(round_2)
        assert rd.stage_model(cfg, 2, "candidates") == str(rd.model(1))  # M_t answers whoever wrote
    with pytest.raises(ConfigError, match="'prompts.model': no such checkpoint directory"):
        compose([f"prompts.model={tmp_path / 'missing'}"])
