import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.calibration import (
    DEFAULT_TEMPERATURE_BOUNDS,
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    temperature_nll,
)


def overconfident(n: int, k: int, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated, multiplied by `scale` (> 1: over-confident)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, k))
    probs = apply_temperature(logits, 1.0)
    labels = np.array([rng.choice(k, p=row) for row in probs])
    return logits * scale, labels


def test_temperature_undoes_overconfidence() -> None:
    logits, labels = overconfident(3000, 5, scale=3.0)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    assert temperature_nll(logits, labels, t) < temperature_nll(logits, labels, 1.0)
    before = expected_calibration_error(apply_temperature(logits, 1.0), labels)
    after = expected_calibration_error(apply_temperature(logits, t), labels)
    assert after <= before
    assert after < 0.05 < before


def test_underconfident_logits_get_a_temperature_below_one() -> None:
    logits, labels = overconfident(3000, 4, scale=0.4, seed=1)
    assert fit_temperature(logits, labels) < 0.6


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1.5, 6.0), seed=st.integers(0, 10_000))
def test_fitted_temperature_never_raises_nll(scale: float, seed: int) -> None:
    logits, labels = overconfident(200, 3, scale=scale, seed=seed)
    t = fit_temperature(logits, labels)
    assert temperature_nll(logits, labels, t) <= temperature_nll(logits, labels, 1.0) + 1e-9


def test_temperature_does_not_change_predictions() -> None:
    logits, _ = overconfident(50, 4, scale=2.0)
    probs = apply_temperature(logits, 2.7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_validation_sets_give_a_bounded_finite_temperature(n: int) -> None:
    logits = np.array([[4.0, 0.0], [0.0, 4.0], [3.0, 1.0]])[:n]
    labels = np.array([0, 1, 0])[:n]
    t = fit_temperature(logits, labels)
    assert np.isfinite(t)
    assert DEFAULT_TEMPERATURE_BOUNDS[0] <= t <= DEFAULT_TEMPERATURE_BOUNDS[1]


def test_logits_without_information_keep_temperature_one() -> None:
    assert fit_temperature(np.zeros((10, 3)), np.arange(10) % 3) == 1.0


def test_multilabel_temperature_uses_binary_cross_entropy() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(2000, 4))
    labels = (rng.random((2000, 4)) < apply_temperature(logits, 1.0, multi_label=True)).astype(int)
    t = fit_temperature(logits * 2.5, labels, multi_label=True)
    assert t == pytest.approx(2.5, rel=0.15)
    assert temperature_nll(logits * 2.5, labels, t, multi_label=True) < temperature_nll(
        logits * 2.5, labels, 1.0, multi_label=True
    )


def test_label_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))


@st.composite
def probs_and_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 40))
    k = draw(st.integers(2, 5))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(1e-3, 1.0)))
    labels = draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return raw / raw.sum(axis=1, keepdims=True), labels


@settings(max_examples=60, deadline=None)
@given(data=probs_and_labels(), n_bins=st.integers(1, 20))
def test_reliability_bin_counts_sum_to_n(data: tuple[np.ndarray, np.ndarray], n_bins: int) -> None:
    probs, labels = data
    bins = reliability_bins(probs, labels, n_bins)
    assert len(bins) == n_bins
    assert sum(b["count"] for b in bins) == len(labels)
    for b in bins:
        if b["count"]:
            assert b["lower"] - 1e-12 <= b["confidence"] <= b["upper"] + 1e-12
            assert 0.0 <= b["accuracy"] <= 1.0
    assert 0.0 <= expected_calibration_error(probs, labels, n_bins) <= 1.0


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_a_wrong_one_is_its_confidence() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_multilabel_bins_count_every_cell() -> None:
    probs = np.array([[0.9, 0.2], [0.6, 0.4]])
    bins = reliability_bins(probs, np.array([[1, 0], [0, 0]]), 5)
    assert sum(b["count"] for b in bins) == 4


def test_report_is_json_and_records_the_improvement() -> None:
    logits, labels = overconfident(1000, 3, scale=4.0, seed=5)
    report = calibration_report(logits, labels)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["temperature"] > 1.0
    assert data["ece_after"] <= data["ece_before"]
    assert data["nll_after"] < data["nll_before"]
    assert sum(b["count"] for b in data["bins_after"]) == 1000
    fixed = calibration_report(logits, labels, temperature=1.0)
    assert fixed.ece_after == pytest.approx(fixed.ece_before)


def test_calibration_cells_reproduce_the_ece_for_any_example_weights() -> None:
    from training.calibration import calibration_cells

    rng = np.random.default_rng(0)
    for probs, labels in (
        (rng.dirichlet(np.ones(4), 80), rng.integers(0, 4, 80)),
        (rng.random((60, 3)), (rng.random((60, 3)) < 0.4).astype(int)),  # multi-label: every cell counts
    ):
        count, confidence, correct = calibration_cells(probs, labels)
        weights = rng.integers(0, 3, probs.shape[0])
        repeated = np.repeat(np.arange(probs.shape[0]), weights)
        ece = np.abs(weights @ correct - weights @ confidence).sum() / (weights @ count).sum()
        assert ece == pytest.approx(expected_calibration_error(probs[repeated], labels[repeated]))


def test_thresholds_on_calibrated_probabilities_decide_the_same_as_their_logit_scale_form() -> None:
    from training.calibration import thresholds_for_logits
    from training.heads import decide

    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(500, 3))
    tuned = [0.3, 0.5, 0.8]
    for temperature in (0.4, 1.0, 2.5):
        calibrated = apply_temperature(logits, temperature, multi_label=True)
        served = decide(logits, "multi_label", thresholds_for_logits(tuned, temperature))
        assert np.array_equal(served, calibrated >= np.array(tuned))
    assert thresholds_for_logits(tuned, 1.0) == pytest.approx(tuned)
    assert all(0 < t < 1 for t in thresholds_for_logits([1e-4, 1 - 1e-4], 20.0))
