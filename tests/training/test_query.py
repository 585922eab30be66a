import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.query import (
    STRATEGIES,
    confidence_scores,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    multilabel_least_confidence_scores,
    multilabel_margin_scores,
    multilabel_uncertainty_scores,
    random_batch,
    rank_by_uncertainty,
    score,
    select_batch,
    uncertainty_summary,
)

SINGLE_LABEL = ["entropy", "margin", "least_confidence"]


@st.composite
def prob_matrices(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(1, 12))
    k = draw(st.integers(2, 8))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(1e-3, 1.0)))
    return raw / raw.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(probs=prob_matrices())
def test_scores_have_one_value_per_row_in_unit_range(probs: np.ndarray) -> None:
    for name in SINGLE_LABEL:
        scores = score(name, probs)
        assert scores.shape == (probs.shape[0],)
        assert np.all(scores >= 0.0) and np.all(scores <= 1.0)
    assert np.all(least_confidence_scores(probs) <= 1.0 - 1.0 / probs.shape[1] + 1e-12)


@settings(max_examples=60, deadline=None)
@given(probs=prob_matrices(), seed=st.integers(0, 1000))
def test_scores_do_not_depend_on_class_order(probs: np.ndarray, seed: int) -> None:
    permutation = np.random.default_rng(seed).permutation(probs.shape[1])
    for name in SINGLE_LABEL:
        np.testing.assert_allclose(score(name, probs), score(name, probs[:, permutation]), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(probs=prob_matrices(), weight=st.floats(0.05, 0.95))
def test_a_more_peaked_distribution_scores_lower(probs: np.ndarray, weight: float) -> None:
    # Moving mass towards the top class sharpens the row without changing its argmax.
    one_hot = np.eye(probs.shape[1])[probs.argmax(axis=1)]
    peaked = (1 - weight) * probs + weight * one_hot
    for name in SINGLE_LABEL:
        assert np.all(score(name, peaked) <= score(name, probs) + 1e-12), name


def test_extreme_rows_score_zero_and_one() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(entropy_scores(probs), [0.0, 1.0])
    np.testing.assert_allclose(margin_scores(probs), [0.0, 1.0])
    np.testing.assert_allclose(least_confidence_scores(probs), [0.0, 2 / 3])


@settings(max_examples=40, deadline=None)
@given(probs=arrays(np.float64, (5, 4), elements=st.floats(0.0, 1.0)), weight=st.floats(0.05, 0.95))
def test_multilabel_uncertainty_is_in_range_and_falls_towards_certainty(
    probs: np.ndarray, weight: float
) -> None:
    scores = multilabel_uncertainty_scores(probs)
    assert scores.shape == (5,)
    assert np.all((scores >= 0) & (scores <= 1))
    certain = (1 - weight) * probs + weight * (probs >= 0.5)
    assert np.all(multilabel_uncertainty_scores(certain) <= scores + 1e-12)
    assert multilabel_uncertainty_scores(np.full((1, 3), 0.5))[0] == pytest.approx(1.0)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        score("bald", np.full((1, 2), 0.5))
    assert set(SINGLE_LABEL) <= set(STRATEGIES)


def test_equal_margins_are_ordered_by_entropy_then_index() -> None:
    # Rows 0 and 1 have the same margin; row 1 spreads its remaining mass more, so it comes first.
    probs = np.array([[0.5, 0.3, 0.2, 0.0], [0.5, 0.3, 0.1, 0.1], [0.5, 0.3, 0.2, 0.0], [0.9, 0.1, 0.0, 0.0]])
    order = rank_by_uncertainty(margin_scores(probs), probs)
    assert order.tolist() == [1, 0, 2, 3]


def test_plain_batch_is_the_top_of_the_ranking() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=100)
    batch = select_batch(probs, 7, strategy="margin", diverse=False)
    assert batch.tolist() == np.argsort(-margin_scores(probs), kind="stable")[:7].tolist()


def test_diverse_batch_takes_at_most_a_couple_of_copies_of_one_template() -> None:
    # Given 50 near-duplicates of one confusing template, the most uncertain items of the pool,
    # and 150 varied items that are a little less uncertain,
    rng = np.random.default_rng(1)
    d = 32
    template = rng.normal(size=d)
    duplicates = template + 0.01 * rng.normal(size=(50, d))
    others = rng.normal(size=(150, d))
    embeddings = np.vstack([duplicates, others])
    probs = np.vstack(
        [np.tile([0.36, 0.34, 0.30], (50, 1)), rng.dirichlet([6, 3, 2], size=150) * 0.9 + [0.05, 0.03, 0.02]]
    )
    assert entropy_scores(probs)[:50].min() > entropy_scores(probs)[50:].max()

    # when a batch of 10 is selected diversely, it holds at most two of them,
    batch = select_batch(probs, 10, strategy="entropy", embeddings=embeddings, diverse=True, seed=0)
    assert len(set(batch.tolist())) == 10
    assert np.sum(batch < 50) <= 2
    # while the plain top-10 would be nothing but the template.
    assert np.all(select_batch(probs, 10, embeddings=embeddings, diverse=False) < 50)


def test_diverse_batch_with_exact_duplicates_still_fills_the_batch() -> None:
    probs = np.tile([0.5, 0.5], (30, 1))
    embeddings = np.ones((30, 4))
    batch = select_batch(probs, 5, embeddings=embeddings, candidate_factor=3)
    assert len(set(batch.tolist())) == 5


@pytest.mark.parametrize("n", [0, 1, 3, 50])
def test_batch_size_is_capped_by_the_pool(n: int) -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=20)
    embeddings = np.random.default_rng(1).normal(size=(20, 8))
    batch = select_batch(probs, n, embeddings=embeddings)
    assert len(batch) == min(n, 20) == len(set(batch.tolist()))


def test_random_batch_is_distinct_and_seeded() -> None:
    first = random_batch(100, 10, seed=3)
    assert len(set(first.tolist())) == 10
    assert first.tolist() == random_batch(100, 10, seed=3).tolist()
    assert first.tolist() != random_batch(100, 10, seed=4).tolist()
    assert len(random_batch(5, 10)) == 5


def test_uncertainty_summary_matches_the_single_scores() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=30)
    summary = uncertainty_summary(probs)
    np.testing.assert_allclose(summary["entropy"], entropy_scores(probs))
    np.testing.assert_allclose(summary["margin"], margin_scores(probs))
    np.testing.assert_allclose(summary["confidence"], 1 - least_confidence_scores(probs))
    assert summary["predicted"].tolist() == probs.argmax(axis=1).tolist()
    multi_probs = np.array([[0.9, 0.5], [0.2, 0.1]])
    multi = uncertainty_summary(multi_probs, multi_label=True)
    np.testing.assert_allclose(multi["confidence"], [0.7, 0.85])
    np.testing.assert_allclose(multi["margin"], multilabel_margin_scores(multi_probs))
    np.testing.assert_allclose(multi["least_confidence"], multilabel_least_confidence_scores(multi_probs))
    assert set(multi) == {"confidence", "entropy", "margin", "least_confidence"}


@given(prob_matrices())
@settings(max_examples=50, deadline=None)
def test_confidence_is_one_minus_least_confidence_in_both_tasks(probs: np.ndarray) -> None:
    # Given softmax rows, and the same numbers read as independent sigmoids
    single = confidence_scores(probs)
    multi = confidence_scores(probs, multi_label=True)

    # Then confidence is the top probability, or the mean probability of each class's decision
    np.testing.assert_allclose(single, probs.max(axis=1))
    np.testing.assert_allclose(1.0 - single, least_confidence_scores(probs))
    assert np.all((multi >= 0.5) & (multi <= 1.0))
    np.testing.assert_allclose(2.0 * (1.0 - multi), multilabel_least_confidence_scores(probs), atol=1e-12)


def test_a_one_class_multi_label_confidence_reads_like_a_binary_top_probability() -> None:
    sigmoid = np.array([[0.8], [0.3]])
    binary = np.hstack([sigmoid, 1 - sigmoid])
    np.testing.assert_allclose(confidence_scores(sigmoid, multi_label=True), confidence_scores(binary))
