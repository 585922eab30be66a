import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from training.cv_logistic import oos_probs_frozen, oos_probs_frozen_multilabel
from training.multiannotator import annotator_agreement
from training.noise import find_noise, find_noise_multilabel

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5 separable Gaussian blobs, 10% of labels flipped to another class."""
    x, y = make_blobs(n_samples=1000, centers=5, n_features=20, cluster_std=3.0, random_state=0)
    rng = np.random.default_rng(0)
    flipped = rng.choice(1000, size=100, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 5, size=100)) % 5
    is_flipped = np.zeros(1000, dtype=bool)
    is_flipped[flipped] = True
    return x, y, noisy, is_flipped


def test_planted_flips_are_found(planted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, truth, noisy, is_flipped = planted
    report = find_noise(noisy, oos_probs_frozen(x, noisy, 5), NAMES)

    found = report.is_issue
    precision = (found & is_flipped).sum() / found.sum()
    recall = (found & is_flipped).sum() / is_flipped.sum()
    assert precision > 0.8 and recall > 0.8
    # The suggestion for a found flip is its true class.
    assert (report.suggested_label[found & is_flipped] == truth[found & is_flipped]).mean() > 0.9
    # The worst-ranked issues are nearly all planted.
    assert is_flipped[report.issue_ranking[:50]].mean() > 0.95


def test_noise_rates_match_the_planted_rate(
    planted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, _, noisy, is_flipped = planted
    report = find_noise(noisy, oos_probs_frozen(x, noisy, 5), NAMES)
    assert report.estimated_noise_rate == pytest.approx(0.10, abs=0.03)
    for row, label in zip(report.per_class, range(5), strict=True):
        actual = is_flipped[noisy == label].mean()
        assert row["n"] == (noisy == label).sum()
        assert row["estimated_noise_rate"] == pytest.approx(actual, abs=0.05)


def test_ranking_is_ascending_quality_and_report_is_json(
    planted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, _, noisy, _ = planted
    report = find_noise(noisy, oos_probs_frozen(x, noisy, 5), NAMES)
    quality = report.label_quality[report.issue_ranking]
    assert (np.diff(quality) >= 0).all()
    assert set(report.issue_ranking.tolist()) == set(np.flatnonzero(report.is_issue).tolist())
    assert ((report.label_quality >= 0) & (report.label_quality <= 1)).all()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_issues"] == report.n_issues
    assert report.issues()[0]["label_quality"] == pytest.approx(quality[0])


def test_clean_labels_give_few_issues() -> None:
    x, y = make_blobs(n_samples=500, centers=3, n_features=10, cluster_std=1.0, random_state=1)
    report = find_noise(y, oos_probs_frozen(x, y, 3), NAMES[:3])
    assert report.n_issues <= 5
    assert report.estimated_noise_rate < 0.02


def test_tiny_data_with_absent_and_singleton_classes_does_not_crash() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array(
        [[0.9, 0.05, 0.02, 0.02, 0.01]] * 2
        + [[0.1, 0.8, 0.05, 0.03, 0.02]] * 2
        + [[0.7, 0.1, 0.1, 0.05, 0.05]]
    )
    report = find_noise(labels, probs, NAMES)
    assert report.per_class[3] == {"label": "d", "estimated_noise_rate": None, "n": 0}
    assert report.per_class[2]["n"] == 1
    assert report.label_quality[4] < 0.2, "the singleton's given label is still scored as doubtful"
    json.dumps(report.to_dict())

    empty = find_noise(np.zeros(0, int), np.zeros((0, 5)), NAMES)
    assert empty.estimated_noise_rate == 0.0 and empty.n_issues == 0


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError):
        find_noise(np.array([0, 1]), np.full((2, 3), 1 / 3), NAMES)
    with pytest.raises(ValueError):
        find_noise(np.array([0, 9]), np.full((2, 5), 0.2), NAMES)


def test_multilabel_missing_and_extra_tags_are_found() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    truth = np.stack([x[:, c] > 0.3 for c in range(3)], axis=1)
    noisy = truth.copy()
    corrupted = rng.choice(600, size=60, replace=False)
    classes = rng.integers(0, 3, size=60)
    noisy[corrupted, classes] = ~noisy[corrupted, classes]
    labels = [list(np.flatnonzero(row)) for row in noisy]

    probs = oos_probs_frozen_multilabel(x * 3, noisy.astype(int))
    report = find_noise_multilabel(labels, probs, ["x", "y", "z"])

    is_corrupted = np.zeros(600, dtype=bool)
    is_corrupted[corrupted] = True
    found = report.is_issue
    assert (found & is_corrupted).sum() / found.sum() > 0.7
    assert (found & is_corrupted).sum() / is_corrupted.sum() > 0.7
    assert report.estimated_noise_rate == pytest.approx(0.1, abs=0.05)
    assert [row["n"] for row in report.per_class] == noisy.sum(axis=0).tolist()
    data = json.loads(json.dumps(report.to_dict()))
    assert len(data["suggested_labels"]) == 600


def _annotations(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 items, 3 classes, annotators 0-2 right 90% of the time, annotator 3 random; ~60% coverage."""
    rng = np.random.default_rng(seed)
    n = 300
    truth = rng.integers(0, 3, n)
    labels = np.full((n, 4), np.nan)
    for annotator in range(4):
        given = (
            rng.integers(0, 3, n)
            if annotator == 3
            else np.where(rng.random(n) < 0.9, truth, rng.integers(0, 3, n))
        )
        covered = rng.random(n) < 0.6
        labels[covered, annotator] = given[covered]
    nobody = np.isnan(labels).all(axis=1)
    labels[nobody, 0] = truth[nobody]
    probs = np.full((n, 3), 0.2)
    probs[np.arange(n), truth] = 0.6
    return labels, probs


def test_random_annotator_gets_the_lowest_quality() -> None:
    labels, probs = _annotations()
    result = annotator_agreement(labels, probs, annotator_ids=["ann", "bob", "cy", "random"])
    assert result["method"] == "crowdlab"
    quality = result["annotator_quality"]
    assert quality["random"] < min(quality["ann"], quality["bob"], quality["cy"]) - 0.2
    assert len(result["consensus_label"]) == 300
    assert 0 < result["agreement_rate"] < 1
    single = [i for i, n in enumerate(result["num_annotations"]) if n == 1]
    assert single and all(result["consensus_label"][i] is not None for i in single)
    json.dumps(result)


def test_items_and_annotators_without_labels_are_reported_as_none() -> None:
    labels, probs = _annotations(1)
    labels = np.hstack([labels, np.full((300, 1), np.nan)])
    labels[5] = np.nan
    result = annotator_agreement(labels, probs)
    assert result["annotator_quality"]["4"] is None
    assert result["consensus_label"][5] is None and result["num_annotations"][5] == 0


def test_one_annotation_per_item_falls_back_to_label_quality() -> None:
    labels = np.array([[0, np.nan], [np.nan, 1], [2, np.nan], [np.nan, 0]])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    result = annotator_agreement(labels, probs)
    assert result["method"] == "single_annotation"
    assert result["consensus_label"] == [0, 1, 2, 0]
    assert result["consensus_quality"][3] < result["consensus_quality"][0]
    assert result["annotator_quality"]["1"] < result["annotator_quality"]["0"]
    assert result["agreement_rate"] is None
