"""The pin itself (tests/helpers.assert_pinned): it passes on the pinned bytes and fails on one changed byte."""

import json

import pytest

from tests import helpers


def toy_run(tmp_path, monkeypatch):
    """A one-file run directory and an empty pins file of its own, in write mode."""
    run = tmp_path / "run"
    (run / "round_1").mkdir(parents=True)
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "a"}\n')
    monkeypatch.setattr(helpers, "PINNED", tmp_path / "pinned.json")
    monkeypatch.setenv("SELFREWARD_PIN", "write")
    return run


def test_a_changed_byte_in_a_stage_file_fails_the_pin(tmp_path, monkeypatch):
    run = toy_run(tmp_path, monkeypatch)
    helpers.assert_pinned("toy", run, rounds=1)
    [entry] = json.loads(helpers.PINNED.read_text())
    assert entry["platform"] == helpers.platform() and list(entry["runs"]["toy"]) == ["round_1/prompts.jsonl"]
    monkeypatch.delenv("SELFREWARD_PIN")
    helpers.assert_pinned("toy", run, rounds=1)
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "b"}\n')
    with pytest.raises(AssertionError, match=r"toy: \['round_1/prompts.jsonl'\] differ"):
        helpers.assert_pinned("toy", run, rounds=1)
    (run / "round_1" / "pairs.jsonl").write_text("")  # a stage file the pin does not have
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "a"}\n')
    with pytest.raises(AssertionError, match="pairs.jsonl"):
        helpers.assert_pinned("toy", run, rounds=1)


def test_a_pin_holds_for_its_own_platform_only(tmp_path, monkeypatch):
    run = toy_run(tmp_path, monkeypatch)
    monkeypatch.setattr(helpers, "platform", lambda: {"cpu": "AVX512"})
    helpers.assert_pinned("toy", run, rounds=1)
    monkeypatch.setattr(helpers, "platform", lambda: {"cpu": "AVX2"})
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "other floats"}\n')
    helpers.assert_pinned("toy", run, rounds=1)
    assert [e["platform"]["cpu"] for e in json.loads(helpers.PINNED.read_text())] == ["AVX512", "AVX2"]
    monkeypatch.delenv("SELFREWARD_PIN")
    helpers.assert_pinned("toy", run, rounds=1)  # AVX2's own bytes
    monkeypatch.setattr(helpers, "platform", lambda: {"cpu": "AVX512"})
    with pytest.raises(AssertionError, match="differ"):
        helpers.assert_pinned("toy", run, rounds=1)
    monkeypatch.setattr(helpers, "platform", lambda: {"cpu": "NEON"})
    with pytest.raises(pytest.skip.Exception, match="pinned on"):
        helpers.assert_pinned("toy", run, rounds=1)
