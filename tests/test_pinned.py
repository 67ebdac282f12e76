"""The pin itself (tests/helpers.assert_pinned): it passes on the pinned bytes and fails on one changed byte."""

import json

import pytest

from tests import helpers


def test_a_changed_byte_in_a_stage_file_fails_the_pin(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "round_1").mkdir(parents=True)
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "a"}\n')
    monkeypatch.setattr(helpers, "PINNED", tmp_path / "pinned.json")
    monkeypatch.setenv("SELFREWARD_PIN", "write")
    helpers.assert_pinned("toy", run, rounds=1)
    assert list(json.loads(helpers.PINNED.read_text())["toy"]) == ["round_1/prompts.jsonl"]
    monkeypatch.delenv("SELFREWARD_PIN")
    helpers.assert_pinned("toy", run, rounds=1)
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "b"}\n')
    with pytest.raises(AssertionError, match=r"toy: \['round_1/prompts.jsonl'\] differ"):
        helpers.assert_pinned("toy", run, rounds=1)
    (run / "round_1" / "pairs.jsonl").write_text("")  # a stage file the pin does not have
    (run / "round_1" / "prompts.jsonl").write_text('{"id": 0, "prompt": "a"}\n')
    with pytest.raises(AssertionError, match="pairs.jsonl"):
        helpers.assert_pinned("toy", run, rounds=1)
