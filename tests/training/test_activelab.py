"""ActiveLab (another label or a first label, on one scale) and answer agreement, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.multiannotator import activelab_scores, answer_agreement

NAN = np.nan


def _agreeing_history(n: int = 30, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """n items two annotators answered alike, the model confident in the same class."""
    labels = np.array([[i % k, i % k] for i in range(n)], dtype=float)
    probs = np.full((n, k), 0.05)
    probs[np.arange(n), np.arange(n) % k] = 1 - 0.05 * (k - 1)
    return labels, probs


def test_a_labeled_item_whose_annotators_disagree_ranks_above_a_confidently_predicted_unlabeled_item():
    # given agreeing history, one item on which the two annotators disagree and the model hesitates
    labels, probs = _agreeing_history()
    labels = np.vstack([labels, [0, 1]])
    probs = np.vstack([probs, [0.45, 0.45, 0.10]])
    confident = np.array([[0.98, 0.01, 0.01]])

    labeled, unlabeled = activelab_scores(labels, probs, confident)

    # then the disputed item is worth more (a lower score) than a first label the model is sure of
    assert labeled[-1] < unlabeled[0]
    assert labeled[-1] == labeled.min()


def test_an_unlabeled_item_the_model_is_unsure_of_ranks_above_labeled_items_everyone_agrees_on():
    labels, probs = _agreeing_history()
    unsure = np.array([[0.34, 0.33, 0.33]])

    labeled, unlabeled = activelab_scores(labels, probs, unsure)

    assert unlabeled[0] < labeled.min()


def test_scores_are_in_the_unit_interval_with_one_per_item():
    labels, probs = _agreeing_history(12)
    labels[3, 1] = NAN  # one answer only
    pool = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])

    labeled, unlabeled = activelab_scores(labels, probs, pool)

    assert labeled.shape == (12,) and unlabeled.shape == (3,)
    assert ((labeled >= 0) & (labeled <= 1)).all() and ((unlabeled >= 0) & (unlabeled <= 1)).all()


def test_with_one_answer_per_item_the_answers_still_count_against_the_model():
    # one annotator: the item whose answer the model doubts needs another label more than the others
    labels = np.array([[0], [1], [2], [0]], dtype=float)
    probs = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.05, 0.9, 0.05]])

    labeled, _ = activelab_scores(labels, probs, None)

    assert labeled.argmin() == 3


def test_only_unlabeled_items_rank_by_least_confidence():
    pool = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1]])

    labeled, unlabeled = activelab_scores(None, None, pool)

    assert labeled.shape == (0,)
    assert list(np.argsort(unlabeled)) == [1, 2, 0]
    assert unlabeled == pytest.approx((pool.max(axis=1) + 1 / 3) / 2)


def test_empty_inputs_give_empty_scores():
    labeled, unlabeled = activelab_scores(np.zeros((0, 2)), np.zeros((0, 3)), np.zeros((0, 3)))
    assert labeled.shape == (0,) and unlabeled.shape == (0,)


def test_annotator_columns_nobody_used_are_ignored():
    labels, probs = _agreeing_history(10)
    padded = np.hstack([labels, np.full((10, 1), NAN)])

    assert activelab_scores(padded, probs, None)[0] == pytest.approx(activelab_scores(labels, probs, None)[0])


def test_bad_shapes_and_unanswered_rows_are_refused():
    labels, probs = _agreeing_history(5)
    with pytest.raises(ValueError, match="rows"):
        activelab_scores(labels[:4], probs, None)
    with pytest.raises(ValueError, match="same number of classes"):
        activelab_scores(labels, probs, np.full((2, 4), 0.25))
    labels[2] = NAN
    with pytest.raises(ValueError, match="at least one label"):
        activelab_scores(labels, probs, None)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3), min_size=1, max_size=20))
def test_unlabeled_scores_keep_the_order_of_confidence(rows):
    pool = np.array(rows)
    pool = pool / pool.sum(axis=1, keepdims=True)

    _, unlabeled = activelab_scores(None, None, pool)

    assert ((unlabeled >= 0) & (unlabeled <= 1)).all()
    confidence = pool.max(axis=1)
    order = np.argsort(confidence, kind="stable")
    assert (np.diff(unlabeled[order]) >= -1e-12).all()


# --- answer agreement -----------------------------------------------------------------------------------
def test_pairs_and_agreement_with_a_reference():
    labels = np.array([[0, 0, 1], [2, 2, NAN], [1, NAN, NAN], [NAN, 0, 0]])
    reference = np.array([0, 2, NAN, 1])

    result = answer_agreement(labels, reference)

    # pairs: item 0 -> 3 pairs, 1 agrees; item 1 -> 1 pair, agrees; item 3 -> 1 pair, agrees
    assert result["n_pairs"] == 5
    assert result["agreement_rate"] == pytest.approx(3 / 5)
    assert result["answered"] == [3, 3, 2]
    # annotator 0: items 0, 1 comparable (2 of 2); annotator 1: 0, 1, 3 (2 of 3); annotator 2: 0, 3 (0 of 2)
    assert result["agreement_with_reference"] == pytest.approx([1.0, 2 / 3, 0.0])


def test_no_pairs_and_no_reference_are_none():
    result = answer_agreement(np.array([[0, NAN], [NAN, 1]]))
    assert result["agreement_rate"] is None and result["n_pairs"] == 0
    assert result["agreement_with_reference"] == [None, None]


def test_answers_must_be_integer_codes():
    with pytest.raises(ValueError, match="non-negative integers"):
        answer_agreement(np.array([[0.5, 1.0]]))
