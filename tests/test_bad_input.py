"""Bad input stops the run with exit code 2, one clear message, and nothing half-written."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import SMALL, selfreward


def leftovers(run_dir):
    return [p for p in run_dir.rglob("*") if p.name.endswith((".partial", ".progress.json")) or ".tmp" in p.name]


def fails(*args, match: str):
    result = selfreward("run", *args, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert match in result.stderr, result.stderr[-3000:]
    return result.stderr


def test_seed_file_with_bad_line_names_file_and_line(tmp_path):
    seed = tmp_path / "ift.jsonl"
    seed.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": \n')
    fails(f"data.ift_path={seed}", f"run_dir={tmp_path / 'run'}", match=f"{seed}:2: not valid JSON")
    seed.write_text('{"instruction": "a"}\n')
    fails(f"data.ift_path={seed}", f"run_dir={tmp_path / 'run'}", match=f"{seed}:1: missing string field(s) response")
    assert not (tmp_path / "run").exists()


def test_seed_record_with_an_empty_field_is_refused(tmp_path):
    seed = tmp_path / "ift.jsonl"
    seed.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "  ", "response": "b"}\n')
    fails(f"data.ift_path={seed}", f"run_dir={tmp_path / 'run'}", match=f"{seed}:2: empty field(s) instruction")
    assert not (tmp_path / "run").exists()


def test_an_init_example_longer_than_training_keeps_is_refused(tmp_path):
    """TRL cuts a long example's end: an EFT judgment would lose the 'Score:' line it teaches."""
    from selfreward.resources import DATA_DIR

    eft = tmp_path / "eft.jsonl"
    lines = (DATA_DIR / "seed_eft.jsonl").read_text().splitlines()[:3]
    long = json.loads(lines[1])
    long["response"] = "word " * 800
    eft.write_text("\n".join([lines[0], json.dumps(long), lines[2]]) + "\n")
    stderr = fails(f"data.eft_path={eft}", f"run_dir={tmp_path / 'run'}", match=f"{eft}:2: this example is")
    assert "more than train.max_length (512)" in stderr and "'Score:' line" in stderr
    # against the model's context when that is shorter than train.max_length
    fails(f"data.eft_path={eft}", "train.max_length=100000", f"run_dir={tmp_path / 'run'}",
          match="more than the model's context (max_position_embeddings) (1024)")
    assert not (tmp_path / "run").exists()


def test_template_missing_placeholder(tmp_path):
    template = tmp_path / "judge.txt"
    template.write_text("Rate this answer: {response}\nScore:")
    fails(f"judge.template={template}", f"run_dir={tmp_path / 'run'}", match="lacks the placeholder(s) {instruction}")
    assert not (tmp_path / "run").exists()


def test_missing_model_path(tmp_path):
    fails("model.name_or_path=/no/such/model", f"run_dir={tmp_path / 'run'}", match="'model.name_or_path'")
    assert not (tmp_path / "run").exists()


def test_tokenizer_without_chat_template(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    fails(f"model.name_or_path={model}", f"run_dir={tmp_path / 'run'}",
          match="has no chat template; set model.chat_template=plain_chat.jinja")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_judge_and_pair_failures_stop_cleanly_then_skip(run_from_init):
    """One run directory, stopped at each judge/pair check in turn; each rerun changes only settings
    of the stage that stopped, which the run accepts because that stage never finished."""
    run_dir = run_from_init()
    base = ["recipe=tiny", *SMALL, "rounds=1", "launch.accelerate_config=null", f"run_dir={run_dir}"]
    r1 = run_dir / "round_1"

    # A judge whose every judgment is cut before "Score:".
    err = fails(*base, "judge.max_new_tokens=1", match="no parseable score for any of")
    assert "parse-failure rate 100%" in err and "One raw judgment:" in err
    assert not (r1 / "judgments.jsonl").exists() and leftovers(run_dir) == []

    # A judge collapsed onto one score, with judge.on_collapse=stop.
    args = [*base, "judge=logprob"]
    err = fails(
        *args, "judge.max_mode_share=0.01", "judge.on_collapse=stop", match="The judge is collapsing to one score"
    )
    assert not (r1 / "judgments.jsonl").exists() and leftovers(run_dir) == []

    # Too few pairs: stop (the tiny recipe skips by default) ...
    err = fails(*args, "pairs.min_pairs=1000", "pairs.on_too_few=stop", match="fewer than pairs.min_pairs=1000")
    assert (r1 / "judgments.jsonl").is_file() and not (r1 / "pairs.jsonl").exists()
    assert leftovers(run_dir) == []

    # ... or skip the update: M2 = M1 and the round completes.
    selfreward("run", *args, "pairs.min_pairs=1000", "pairs.on_too_few=skip")
    before, after = load_file(run_dir / "init/model/model.safetensors"), load_file(r1 / "model/model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    metrics = json.loads((r1 / "metrics.json").read_text())
    assert metrics["training"]["skipped"] is True

    # Changing a setting that a finished stage used is refused; restart_from redoes it.
    err = fails(
        *args, "pairs.min_pairs=1000", "pairs.on_too_few=skip", "judge.max_score=4", match="judge.max_score: 5 -> 4"
    )
    assert "restart_from=judge" in err
    selfreward("run", *args, "pairs.min_pairs=1", "judge.max_score=4", "restart_from=judge")
    assert not json.loads((r1 / "metrics.json").read_text())["training"]["skipped"]
    assert (run_dir / "superseded").is_dir()
    scores = [json.loads(line)["score"] for line in (r1 / "judgments.jsonl").read_text().splitlines()]
    assert all(s is None or s <= 4 for s in scores)
