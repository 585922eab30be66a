"""Every view of the labels over one shared set of stratified folds: what the train job's noise stage
computes before :func:`training.ensemble.weighted_ensemble` mixes the views and cleanlab reads the mixture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from training.cv_finetuned import oos_probs_finetuned
from training.cv_knn import knn_probs_with_count
from training.cv_logistic import oos_probs_logistic
from training.cv_tfidf import TFIDF_C_GRID, tfidf_features
from training.data import stratified_folds

if TYPE_CHECKING:
    from training.train import TrainConfig


#: ``C`` values the ``frozen_lr`` view of :func:`label_noise_views` compares (dense, unit-scale embeddings).
EMBEDDING_C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass
class NoiseViews:
    """Out-of-fold probabilities of several views of the same labels (see :func:`label_noise_views`).

    Attributes
    ----------
    probs : dict of str to np.ndarray, each shape (n, n_classes)
    seconds : dict of str to float
        Wall-clock time per view.
    settings : dict of str to dict
        What each view chose for itself: ``C`` of the linear views, ``n_neighbors`` of ``knn``.
    """

    probs: dict[str, np.ndarray]
    seconds: dict[str, float]
    settings: dict[str, dict[str, Any]]


def label_noise_views(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    finetune: bool = False,
    label_names: Sequence[str] | None = None,
    finetune_config: TrainConfig | None = None,
) -> NoiseViews:
    """Every view's out-of-fold probabilities over one shared set of stratified folds.

    Views, each choosing its one setting by out-of-fold log loss:

    - ``frozen_lr``: logistic regression on the frozen embeddings, ``C`` from :data:`EMBEDDING_C_GRID`
      (:func:`oos_probs_logistic`);
    - ``knn``: leave-one-out cosine kNN on the same embeddings, neighbours from :data:`KNN_GRID`
      (:func:`oos_probs_knn`);
    - ``tfidf``: logistic regression on TF-IDF word and character n-grams, ``C`` from
      :data:`TFIDF_C_GRID` (:func:`oos_probs_tfidf`);
    - ``finetuned``, only when ``finetune``: fine-tuned encoder folds (:func:`oos_probs_finetuned`).

    Mix them with :func:`weighted_ensemble`.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
        Frozen encoder embeddings of ``texts``.
    texts : sequence of str, length n
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    finetune : bool
        Add fine-tuned folds (the caller decides whether they are affordable: a GPU, or few examples).
    label_names : sequence of str, optional
        Class names for the fine-tuned folds; default ``"0"``, ``"1"``, ...
    finetune_config : training.train.TrainConfig, optional
        Passed to :func:`oos_probs_finetuned`.

    Returns
    -------
    NoiseViews
    """
    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.shape[0] != y.shape[0] or len(texts) != y.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings and {len(texts)} texts but {y.shape[0]} labels")
    folds = stratified_folds(y, k, seed)
    names = list(label_names) if label_names is not None else [str(i) for i in range(n_classes)]
    views = NoiseViews({}, {}, {})

    def frozen_lr() -> np.ndarray:
        probs, c = oos_probs_logistic(x, y, n_classes, C=EMBEDDING_C_GRID, folds=folds)
        views.settings["frozen_lr"] = {"C": c}
        return probs

    def knn() -> np.ndarray:
        probs, count = knn_probs_with_count(x, y, n_classes, "auto", 0.1, None)
        views.settings["knn"] = {"n_neighbors": count}
        return probs

    def tfidf() -> np.ndarray:
        features = tfidf_features(texts)
        if features.shape[1] == 0:
            views.settings["tfidf"] = {"n_features": 0}
            return np.full((y.shape[0], n_classes), 1.0 / n_classes)
        probs, c = oos_probs_logistic(features, y, n_classes, C=TFIDF_C_GRID, folds=folds)
        views.settings["tfidf"] = {"C": c, "n_features": int(features.shape[1])}
        return probs

    def finetuned() -> np.ndarray:
        return oos_probs_finetuned(texts, y, names, config=finetune_config, seed=seed, folds=folds)

    makers: dict[str, Callable[[], np.ndarray]] = {"frozen_lr": frozen_lr, "knn": knn, "tfidf": tfidf}
    if finetune:
        makers["finetuned"] = finetuned
    for name, make in makers.items():
        started = time.perf_counter()
        views.probs[name] = make()
        views.seconds[name] = round(time.perf_counter() - started, 3)
    return views

