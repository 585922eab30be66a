import numpy as np
import pytest
from sklearn.datasets import make_blobs

from training.cv import MISSING_CLASS_EPSILON, oos_probs
from training.cv_knn import oos_probs_knn
from training.cv_logistic import oos_probs_frozen, oos_probs_frozen_multilabel, select_regularization
from training.data import stratified_folds
from training.ensemble import ensemble_probs


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=300, centers=4, n_features=10, cluster_std=2.0, random_state=0)
    return x, y


def test_every_example_is_predicted_once_by_a_model_that_did_not_see_it(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    _, y = blobs
    tested = np.zeros(len(y), dtype=int)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        assert not set(train_idx.tolist()) & set(test_idx.tolist())
        tested[test_idx] += 1
        return np.full((len(test_idx), 4), 0.25)

    probs = oos_probs(fit_predict, y, 4, k=5, seed=0)
    assert (tested == 1).all()
    assert probs.shape == (300, 4)


def test_frozen_head_gives_accurate_normalised_probabilities(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    probs = oos_probs_frozen(x, y, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    assert np.array_equal(probs, oos_probs_frozen(x, y, 4)), "same seed, same folds, same result"


def test_rare_and_absent_classes_get_probabilities_over_all_classes() -> None:
    # Class 2 has one member and class 3 none: the fold that holds out the lone member cannot predict it.
    rng = np.random.default_rng(0)
    y = np.array([0] * 10 + [1] * 10 + [2])
    x = rng.normal(size=(21, 5)) + y[:, None] * 3
    probs = oos_probs_frozen(x, y, 4, k=5)
    assert probs.shape == (21, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[:, 3].max() <= 2 * MISSING_CLASS_EPSILON
    assert probs[20, 2] <= 2 * MISSING_CLASS_EPSILON


def test_folds_shrink_to_what_the_data_allow() -> None:
    assert len(stratified_folds(np.array([0, 1, 1]), k=5)) == 2
    assert len(stratified_folds(np.array([0, 1, 2]), k=5)) == 2
    assert stratified_folds(np.array([0]), k=5) == []
    assert len(stratified_folds(np.repeat([0, 1], 50), k=5)) == 5


def test_one_example_or_one_class_does_not_crash() -> None:
    np.testing.assert_allclose(oos_probs_frozen(np.ones((1, 3)), np.array([1]), 3), [[1 / 3] * 3])
    probs = oos_probs_frozen(np.random.default_rng(0).normal(size=(6, 3)), np.zeros(6, int), 2)
    assert (probs.argmax(axis=1) == 0).all()


def test_a_fit_predict_with_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        oos_probs(lambda train, test: np.ones((len(test), 2)), np.array([0, 1, 0, 1]), 3)


def test_regularisation_is_chosen_from_the_grid(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = blobs
    assert select_regularization(x, y, grid=(0.01, 1.0)) in (0.01, 1.0)
    probs = oos_probs_frozen(x, y, 4, C="auto")
    assert (probs.argmax(axis=1) == y).mean() > 0.95


def test_multilabel_folds_give_one_probability_per_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6))
    labels = np.stack([x[:, 0] > 0, x[:, 1] > 0, np.zeros(80, bool)], axis=1).astype(int)
    probs = oos_probs_frozen_multilabel(x, labels, 3)
    assert probs.shape == (80, 3)
    with pytest.raises(ValueError):
        oos_probs_frozen_multilabel(x, labels, 4)
    assert ((probs > 0) & (probs < 1)).all()
    assert ((probs[:, :2] >= 0.5) == labels[:, :2]).mean() > 0.9
    assert probs[:, 2].max() < 0.05, "a class never present stays improbable"


def test_knn_probabilities_leave_the_example_itself_out() -> None:
    # Two identical points with different labels: each is predicted as the other's label.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = np.array([0, 1, 1, 1])
    probs = oos_probs_knn(x, y, 2, n_neighbors=1)
    assert probs.argmax(axis=1).tolist() == [1, 0, 1, 1]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_ensemble_is_a_weighted_mean() -> None:
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(ensemble_probs([a, b]), [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(ensemble_probs([a, b], weights=[3, 1]), [[0.75, 0.25], [0.5, 0.5]])
    with pytest.raises(ValueError):
        ensemble_probs([a, b], weights=[1, -1])
    with pytest.raises(ValueError):
        ensemble_probs([])
    multi = ensemble_probs([np.array([[0.9, 0.8]]), np.array([[0.7, 0.6]])], multi_label=True)
    np.testing.assert_allclose(multi, [[0.8, 0.7]])


def test_knn_neighbours_can_be_restricted() -> None:
    # Row 1 sits on row 0; with row 0 barred from voting, row 1 is predicted from the far-away rows.
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.1, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert oos_probs_knn(x, y, 2, n_neighbors=1).argmax(axis=1).tolist() == [0, 0, 1, 1]
    barred = oos_probs_knn(x, y, 2, n_neighbors=1, neighbour_mask=np.array([False, True, True, True]))
    assert barred.argmax(axis=1).tolist() == [0, 1, 1, 1]
