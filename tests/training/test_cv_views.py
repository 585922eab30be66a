"""Several views of the labels (frozen LR, kNN, TF-IDF, fine-tuned folds) and their weighted ensemble."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from training.cv import log_loss_of
from training.cv_finetuned import FINETUNE_CPU_MAX_EXAMPLES, finetune_affordable, oos_probs_finetuned
from training.cv_knn import oos_probs_knn
from training.cv_logistic import oos_probs_logistic
from training.cv_tfidf import oos_probs_tfidf, tfidf_features
from training.ensemble import weighted_ensemble
from training.noise_views import EMBEDDING_C_GRID, label_noise_views

CLASS_WORDS = [
    ["goal", "striker", "league", "match", "coach", "stadium"],
    ["bread", "recipe", "oven", "pasta", "spice", "kitchen"],
    ["software", "chip", "laptop", "server", "network", "browser"],
]
FILLER = [
    "today",
    "people",
    "said",
    "new",
    "year",
    "week",
    "report",
    "city",
    "time",
    "local",
    "more",
    "after",
]


def planted_noise_fixture(
    n: int = 300, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texts, embeddings, true labels, given labels (10% flipped) and the flipped mask.

    Half the examples say their class in words and nothing in their embedding; the other half the
    reverse. Each single view therefore knows half of the data, and only a mixture knows all of it.
    """
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 3
    rng.shuffle(truth)
    lexical = np.arange(n) % 2 == 0
    texts, embeddings = [], []
    for i, c in enumerate(truth):
        filler = list(rng.choice(FILLER, size=4))
        if lexical[i]:
            words = list(rng.choice(CLASS_WORDS[c], size=3)) + filler
            vector = rng.normal(size=16)
        else:
            words = filler + list(rng.choice(FILLER, size=3))
            vector = rng.normal(size=16)
            vector[c] += 3.0
        rng.shuffle(words)
        texts.append(" ".join(words))
        embeddings.append(vector)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=n // 10, replace=False)] = True
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, 3, size=flipped.sum())) % 3
    return texts, np.array(embeddings), truth, given, flipped


def memorisable_fixture(n: int = 60) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Random labels, and features unique to each example: a model that saw an example's label can
    recall it (probability ~1), a model that did not can only guess (~1/3)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=n)
    texts = [f"item{i}x item{i}y item{i}z" for i in range(n)]
    return texts, rng.normal(size=(n, 400)), labels


def given_label_probability(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(probs[np.arange(labels.size), labels].mean())


def test_a_model_that_saw_the_labels_recalls_them_but_every_view_is_out_of_fold() -> None:
    # Given labels that only memory can predict
    texts, embeddings, labels = memorisable_fixture()
    seen = LogisticRegression(C=1e4, max_iter=5000).fit(embeddings, labels)
    assert given_label_probability(seen.predict_proba(embeddings), labels) > 0.95
    seen_lexical = LogisticRegression(C=1e4, max_iter=5000).fit(tfidf_features(texts, min_df=1), labels)
    assert given_label_probability(seen_lexical.predict_proba(tfidf_features(texts, min_df=1)), labels) > 0.95

    # When each view scores the examples out of fold
    views = {
        "frozen_lr": oos_probs_logistic(embeddings, labels, 3, C=1e4)[0],
        "knn": oos_probs_knn(embeddings, labels, 3, n_neighbors="auto"),
        "tfidf": oos_probs_tfidf(texts, labels, 3, C=1e4),
    }

    # Then none of them recalls a label it could only have memorised
    for name, probs in views.items():
        assert probs.shape == (60, 3), name
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, err_msg=name)
        assert given_label_probability(probs, labels) < 0.5, name


def test_fine_tuned_folds_never_predict_a_text_their_model_trained_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a "fine-tune" that memorises its training texts (certain about them, uniform otherwise)
    import training.train

    texts, _, labels = memorisable_fixture(30)
    names = ["a", "b", "c"]
    trained_on: list[set[str]] = []

    class Memory:
        def __init__(self, train_texts: list[str], train_labels: list[str]) -> None:
            self.known = dict(zip(train_texts, train_labels, strict=True))

        def predict_proba(self, batch: list[str]) -> np.ndarray:
            probs = np.full((len(batch), 3), 1 / 3)
            for row, text in enumerate(batch):
                if text in self.known:
                    probs[row] = np.eye(3)[names.index(self.known[text])]
            return probs

    def fake_train(
        train_texts: list[str], train_labels: list[str], label_names: list[str], **_: Any
    ) -> Memory:
        trained_on.append(set(train_texts))
        return Memory(train_texts, train_labels)

    monkeypatch.setattr(training.train, "train_classifier", fake_train)

    # When the folds predict every text
    probs = oos_probs_finetuned(texts, labels, names, k=5)

    # Then every text was predicted by a model that never saw it, and each model trained on the others
    np.testing.assert_allclose(probs, 1 / 3)
    assert len(trained_on) == 5 and all(20 <= len(s) < 30 for s in trained_on)


def test_views_share_folds_and_report_what_they_chose() -> None:
    texts, embeddings, _, given_labels, _ = planted_noise_fixture()

    views = label_noise_views(embeddings, texts, given_labels, 3)

    assert set(views.probs) == {"frozen_lr", "knn", "tfidf"}
    for name, probs in views.probs.items():
        assert probs.shape == (300, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, err_msg=name)
        assert views.seconds[name] >= 0.0
    assert views.settings["frozen_lr"]["C"] in EMBEDDING_C_GRID
    assert views.settings["knn"]["n_neighbors"] in (5, 10, 20, 50)
    assert views.settings["tfidf"]["n_features"] > 0


def test_weighted_ensemble_beats_every_single_view_on_planted_flips() -> None:
    # Given complementary views of labels with 10% planted flips
    texts, embeddings, _, given_labels, flipped = planted_noise_fixture()
    views = label_noise_views(embeddings, texts, given_labels, 3)

    # When they are mixed by out-of-fold log loss
    mixed, report = weighted_ensemble(views.probs, given_labels, 3, seconds=views.seconds)

    # Then the mixture predicts the given labels better than any view, and ranks the flips better
    def flip_auroc(probs: np.ndarray) -> float:
        return float(roc_auc_score(flipped, -probs[np.arange(flipped.size), given_labels]))

    for name, probs in views.probs.items():
        assert report.ensemble_log_loss < log_loss_of(probs, given_labels) - 0.02, name
        assert flip_auroc(mixed) > flip_auroc(probs) + 0.01, name
    # with non-negative weights summing to 1, every view contributing, and the report complete
    weights = np.array(list(report.weights.values()))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert report.method == "min_log_loss"
    assert set(report.to_dict()["views"]) == {"frozen_lr", "knn", "tfidf"}
    assert all(
        {"log_loss", "weight", "seconds", "temperature"} <= set(v) for v in report.to_dict()["views"].values()
    )
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_views=st.integers(1, 4),
    n=st.integers(1, 40),
    calibrate=st.booleans(),
)
def test_weights_are_a_distribution_and_the_mixture_is_no_worse_than_the_best_view(
    seed: int, n_views: int, n: int, calibrate: bool
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    views = {f"v{i}": rng.dirichlet(np.full(4, 0.5), size=n) for i in range(n_views)}

    mixed, report = weighted_ensemble(views, labels, 4, calibrate=calibrate)

    weights = np.array(list(report.weights.values()))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    assert report.ensemble_log_loss <= min(report.log_loss.values()) + 1e-6


def test_one_view_gets_all_the_weight_and_bad_input_is_refused() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    mixed, report = weighted_ensemble({"only": probs}, np.array([0, 1]), 2, calibrate=False)
    np.testing.assert_allclose(mixed, probs)
    assert report.weights == {"only": 1.0} and report.method == "single_view"
    with pytest.raises(ValueError):
        weighted_ensemble({}, np.array([0, 1]))
    with pytest.raises(ValueError):
        weighted_ensemble({"a": probs}, np.array([0, 1, 1]))


def test_a_useless_view_gets_little_weight() -> None:
    texts, embeddings, _, given_labels, _ = planted_noise_fixture()
    views = label_noise_views(embeddings, texts, given_labels, 3).probs
    views["uniform"] = np.full((300, 3), 1 / 3)

    _, report = weighted_ensemble(views, given_labels, 3)

    assert report.weights["uniform"] < 0.1


def test_logistic_view_picks_c_from_the_grid_and_handles_sparse_features() -> None:
    texts, embeddings, _, given_labels, _ = planted_noise_fixture(150)
    dense, c_dense = oos_probs_logistic(embeddings, given_labels, 3, C=(0.01, 0.1, 1.0, 10.0))
    sparse, c_sparse = oos_probs_logistic(tfidf_features(texts), given_labels, 3, C=(1.0, 10.0))
    assert c_dense in (0.01, 0.1, 1.0, 10.0) and c_sparse in (1.0, 10.0)
    for probs in (dense, sparse):
        assert probs.shape == (150, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    one, _ = oos_probs_logistic(embeddings[:1], given_labels[:1], 3)
    np.testing.assert_allclose(one, [[1 / 3] * 3])


def test_tfidf_view_survives_texts_without_words() -> None:
    probs = oos_probs_tfidf(["", "  ", "!", "?"], np.array([0, 1, 0, 1]), 2)
    np.testing.assert_allclose(probs, 0.5)


def test_fine_tuned_folds_run_on_a_gpu_and_on_a_cpu_only_under_the_cap() -> None:
    assert finetune_affordable(5_000, on_gpu=True)
    assert not finetune_affordable(50_000, on_gpu=True)
    assert finetune_affordable(200, on_gpu=False) is (FINETUNE_CPU_MAX_EXAMPLES >= 200)
    assert finetune_affordable(200, on_gpu=False, cpu_max=300)
    assert not finetune_affordable(301, on_gpu=False, cpu_max=300)
    assert not finetune_affordable(5, on_gpu=True)
