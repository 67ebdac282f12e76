import pytest

from selfreward.stats import distinct_n, kendall_tau, pairwise_accuracy, spearman, swapped_outcome, win_rate


def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # pairs: (1,2) C, (1,3) C, (2,3) D  -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # tie in x for (1,2): C=2 (1-3, 2-3), D=0, ties_x=1 -> 2 / sqrt(3 * 2)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 6**0.5)
    assert kendall_tau([1, 1], [2, 2]) is None


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1,2,3 ; y = 1,3,2 -> d^2 = 0,1,1 -> 1 - 6*2/(3*8) = 0.5
    assert spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)


def test_pairwise_accuracy_by_hand():
    groups = ["q1", "q1", "q1", "q2", "q2"]
    ref = [5, 3, 1, 4, 4]  # q2's pair has equal references: not counted
    judge = [4, 4, 2, 1, 5]
    # q1 pairs: (5,3): judge tie -> 0.5 ; (5,1): 4>2 right -> 1 ; (3,1): 4>2 right -> 1
    assert pairwise_accuracy(groups, judge, ref) == (pytest.approx(2.5 / 3), 3)
    assert pairwise_accuracy(["a"], [1], [1]) == (None, 0)
    # an unparsed judgment (None) makes its pairs wrong, on either side; it never drops out
    assert pairwise_accuracy(["a", "a", "b", "b"], [None, 1, 5, None], [5, 1, 5, 1]) == (0.0, 2)
    assert pairwise_accuracy(["a", "a", "a"], [4, 2, None], [5, 3, 1]) == (pytest.approx(1 / 3), 3)


def test_swapped_outcome_and_win_rate_with_ties():
    assert swapped_outcome((0.7, 0.3), (0.2, 0.8)) == 1.0  # new wins in both orders
    assert swapped_outcome((0.3, 0.7), (0.8, 0.2)) == 0.0  # new loses in both orders
    assert swapped_outcome((0.7, 0.3), (0.7, 0.3)) == 0.5  # judge always picks A: position bias
    assert swapped_outcome((0.5, 0.5), (0.2, 0.8)) == 0.5
    result = win_rate([1.0, 0.0, 0.5, 1.0])
    assert result == {"win_rate": 0.625, "wins": 2, "ties": 1, "losses": 1, "decided": 3, "n": 4}
    # all ties: the evaluator followed the position every time, so there is no rate (not 0.5)
    assert win_rate([0.5] * 16) == {"win_rate": None, "wins": 0, "ties": 16, "losses": 0, "decided": 0, "n": 16}


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a"], 2) is None


def test_each_arm_keeps_one_colour_in_every_panel():
    """A panel where an arm has no data (self_consistency has no judge) must not shift the other arms'
    colours, and the one legend names every arm in its colour."""
    from selfreward.report import CURVES, curves_figure

    judge = "judge on own candidates (testbed)"
    series = {c.title: {} for c in CURVES}
    series["held-out accuracy, greedy (testbed)"] = {"random": [(0, 0.5, None)], "votes": [(0, 0.6, None)],
                                                     "base": [(0, 0.7, None)]}
    series[judge] = {"random": [(1, 0.5, None)], "votes": [], "base": [(1, 0.6, None)]}
    fig = curves_figure(series, "t", "arm")
    colours = {}
    for ax in fig.axes:
        for container in ax.containers:
            line = container.lines[0]
            colours.setdefault(container.get_label(), set()).add(line.get_color())
    assert {k: len(v) for k, v in colours.items()} == {"random": 1, "votes": 1, "base": 1}
    assert len({next(iter(v)) for v in colours.values()}) == 3
    [legend] = fig.legends
    shown = {t.get_text(): h.get_color() for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert shown == {k: next(iter(v)) for k, v in colours.items()}
