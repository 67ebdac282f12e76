import pytest

from selfreward.judge import parse_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Relevant and clear.\nScore: 4", 4.0),
        ("score: 3", 3.0),
        ("SCORE:5", 5.0),
        ("Score: 3.5", 3.5),
        ("Score: 0", 0.0),
        ("**Score:** 4", 4.0),
        ("**Score: 4**", 4.0),
        ("Score: *2*", 2.0),
        ("_Score_: 1", 1.0),
        ("Score: 4/5", 4.0),
        ("Score: 4 / 5.", 4.0),
        ("Score: 3 points.", 3.0),
        ("Score: 2.", 2.0),
        ("Score: 5!", 5.0),
        ("It earns two points (+1)(+1). Score: 2\n", 2.0),
    ],
)
def test_well_formed(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "No score here.", "Score:", "Score: four", "Score: -1", "Score - 4", "Subscore: 3", "score 4", None],
)
def test_malformed_is_none(text):
    assert parse_score(text) is None


@pytest.mark.parametrize("text", ["Score: 6", "Score: 5.5", "Score: 10/10", "Score: 4/10", "Score: 100"])
def test_out_of_range_or_other_scale_is_none(text):
    assert parse_score(text) is None


def test_last_score_wins():
    assert parse_score("Score: 2 at first, then on reflection\nScore: 4") == 4.0
    assert parse_score("Score: 4 ... final Score: 7") is None  # the last one counts, even when invalid


def test_max_score():
    assert parse_score("Score: 8", max_score=10) == 8.0
    assert parse_score("Score: 8/10", max_score=10) == 8.0
    assert parse_score("Score: 11", max_score=10) is None
