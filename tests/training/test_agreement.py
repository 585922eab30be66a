"""training.agreement: agreement of annotators whose answers are label sets, Cohen's and Fleiss' kappa."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.agreement import (
    cohen_kappa_pairs,
    fleiss_kappa,
    label_set_agreement,
    median_answer_seconds,
    team_fleiss_kappa,
)


def test_sets_are_compared_whole_and_in_any_order():
    answers = [{"ann": ["a", "b"], "bob": ["b", "a"]}, {"ann": ["a"], "bob": ["b"]}, {"ann": ["a"]}]
    reference = [["a", "b"], ["b"], []]

    rates = label_set_agreement(answers, reference)

    assert rates["n_pairs"] == 2 and rates["agreement_rate"] == 0.5
    assert rates["annotators"] == {"ann": {"answered": 3, "agreement": 0.5},
                                   "bob": {"answered": 2, "agreement": 1.0}}


def test_without_a_reference_nobody_has_an_agreement_with_it():
    rates = label_set_agreement([{"ann": ["a"], "bob": ["a"]}])

    assert rates["agreement_rate"] == 1.0
    assert rates["annotators"]["ann"] == {"answered": 1, "agreement": None}


def test_one_reference_per_item():
    with pytest.raises(ValueError, match="one reference per item"):
        label_set_agreement([{"ann": ["a"]}], [["a"], ["b"]])


# --- Cohen's kappa per pair, Fleiss' kappa for the team ----------------------------------------------------

# Fleiss (1971) as Wikipedia works it: 10 items, 14 raters each, 5 categories; kappa 0.210.
WIKIPEDIA_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def _team(codes: dict[str, str]) -> list[dict[str, list[str]]]:
    names = {"P": "positive", "N": "negative"}
    n = len(next(iter(codes.values())))
    return [{who: [names[answer[i]]] for who, answer in codes.items()} for i in range(n)]


def test_cohen_kappa_for_each_pair_as_worked_by_hand():
    answers = _team({"anna": "PPNNPN", "ben": "PPNNNN", "cara": "PNNPPN"})

    pairs = {(p["a"], p["b"]): p for p in cohen_kappa_pairs(answers)}

    assert pairs[("anna", "ben")]["kappa"] == pytest.approx(2 / 3)
    assert pairs[("anna", "cara")]["kappa"] == pytest.approx(1 / 3)
    assert pairs[("ben", "cara")]["kappa"] == pytest.approx(0.0)
    assert pairs[("anna", "ben")]["agreement"] == pytest.approx(5 / 6) and pairs[("anna", "ben")]["n"] == 6


def test_a_pair_counts_only_the_items_both_answered():
    answers = [{"a": ["x"], "b": ["x"]}, {"a": ["y"], "b": ["y"]}, {"a": ["x"], "c": ["y"]}]

    pairs = {(p["a"], p["b"]): p for p in cohen_kappa_pairs(answers)}

    assert pairs[("a", "b")]["n"] == 2 and pairs[("a", "b")]["kappa"] == pytest.approx(1.0)
    assert pairs[("a", "c")]["n"] == 1 and pairs[("a", "c")]["kappa"] is None  # one shared item is too few
    assert ("b", "c") not in pairs


def test_kappa_is_undefined_when_both_always_give_one_label():
    [pair] = cohen_kappa_pairs([{"a": ["x"], "b": ["x"]}] * 4)

    assert pair["kappa"] is None and pair["agreement"] == 1.0


def test_label_sets_are_one_category_in_any_order():
    answers = [{"a": ["x", "y"], "b": ["y", "x"]}, {"a": ["x"], "b": ["x"]}, {"a": ["y"], "b": ["x", "y"]}]

    [pair] = cohen_kappa_pairs(answers)

    assert pair["agreement"] == pytest.approx(2 / 3)


def test_fleiss_kappa_of_the_textbook_table():
    assert fleiss_kappa(np.array(WIKIPEDIA_TABLE)) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_of_the_team_as_worked_by_hand():
    assert team_fleiss_kappa(_team({"anna": "PPNNPN", "ben": "PPNNNN", "cara": "PNNPPN"})) == pytest.approx(13 / 40)


def test_fleiss_kappa_leaves_out_items_with_one_answer_and_is_none_without_variety():
    assert team_fleiss_kappa([{"a": ["x"]}, {"b": ["y"]}]) is None
    assert team_fleiss_kappa([{"a": ["x"], "b": ["x"]}, {"a": ["x"], "c": ["x"]}]) is None
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [1, 0]])) == pytest.approx(1.0)


def test_fleiss_kappa_rejects_bad_tables():
    with pytest.raises(ValueError, match="2-d"):
        fleiss_kappa(np.array([1, 2]))
    with pytest.raises(ValueError, match="negative"):
        fleiss_kappa(np.array([[2, -1]]))


@given(st.lists(st.lists(st.integers(0, 4), min_size=3, max_size=3), min_size=2, max_size=30))
def test_fleiss_kappa_is_at_most_one_and_one_only_for_full_agreement(rows):
    table = np.array([r for r in rows if sum(r) >= 2] or [[2, 0, 0]])
    kappa = fleiss_kappa(table)

    if kappa is not None:
        assert kappa <= 1.0 + 1e-9
        full = all(max(r) == sum(r) for r in table)
        assert (abs(kappa - 1.0) < 1e-9) == full


@given(st.integers(2, 6))
def test_two_raters_on_every_item_give_the_same_fleiss_kappa_for_any_relabelling(n):
    rng = np.random.default_rng(n)
    table = np.zeros((20, 3))
    for i in range(20):
        for j in rng.integers(0, 3, size=n):
            table[i, j] += 1
    assert fleiss_kappa(table) == pytest.approx(fleiss_kappa(table[:, ::-1]))


def test_median_seconds_leave_breaks_out():
    assert median_answer_seconds([10, 20, 30, 940, 20, 30], cap=600) == 20.0
    assert median_answer_seconds([900], cap=600) is None
    assert median_answer_seconds([], cap=600) is None
