"""training.agreement: agreement of annotators whose answers are label sets."""

from __future__ import annotations

import pytest

from training.agreement import label_set_agreement


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
