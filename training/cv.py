"""Out-of-sample predicted probabilities for every labeled example (K-fold cross-validation).

cleanlab needs, for each labeled example, probabilities from a model that did not see that example.
:func:`oos_probs` runs any ``fit_predict(train_idx, test_idx)`` over stratified folds, so a caller can
plug in any model. This module holds that fold runner and what every view shares (the log loss views are
compared by, the floor for classes a fold never saw, :func:`one_blas_thread`). The views, each a genuinely
different model of the same labels, live beside it:

- :mod:`training.cv_logistic`: a logistic-regression head on cached (frozen) encoder embeddings, choosing
  ``C`` by out-of-fold log loss (:func:`~training.cv_logistic.oos_probs_logistic`);
- :mod:`training.cv_knn`: a leave-one-out k-nearest-neighbour estimate on the same embeddings;
- :mod:`training.cv_tfidf`: a lexical view, TF-IDF word and character n-grams with a linear model;
- :mod:`training.cv_finetuned`: fine-tuned encoder folds (strongest, but costly without a GPU).

:func:`training.noise_views.label_noise_views` computes them over one shared set of folds and
:func:`training.ensemble.weighted_ensemble` mixes them. Everything but the fine-tuned folds runs on one
BLAS thread (:func:`one_blas_thread`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.data import stratified_folds

#: Probability given to a class the fold's model could not predict (absent from its training part).
MISSING_CLASS_EPSILON = 1e-6

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Dense features, or a scipy sparse matrix (TF-IDF).
Features: TypeAlias = "np.ndarray | sp.spmatrix"


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the enclosed linear algebra on one BLAS thread.

    The matrices here are small (n x 384 embeddings, k classes): splitting them over threads gains little,
    and on a shared 2-core worker (training, scoring and the web process side by side) OpenBLAS threads
    spin against each other. Measured on such a machine: one logistic-regression fit on 1,700 x 384
    embeddings took 2.7-4.0 s with 2 BLAS threads and 0.1-0.25 s with one.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield



def fill_missing_classes(probs: np.ndarray) -> np.ndarray:
    """Rows of ``probs`` with NaN (a class the fold's model never saw) floored at ``MISSING_CLASS_EPSILON``, renormalised."""
    filled = np.where(np.isfinite(probs), probs, 0.0)
    filled = np.maximum(filled, MISSING_CLASS_EPSILON)
    return filled / filled.sum(axis=1, keepdims=True)


def log_loss_of(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log probability of the given labels.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int in [0, k)

    Returns
    -------
    float
        0.0 for no rows; probabilities are floored at ``MISSING_CLASS_EPSILON`` so one zero cannot make it
        infinite.
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        return 0.0
    picked = np.asarray(probs, dtype=np.float64)[np.arange(y.size), y]
    return float(-np.mean(np.log(np.maximum(picked, MISSING_CLASS_EPSILON))))


def oos_probs(
    fit_predict: FitPredict,
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities for every example from any model.

    Parameters
    ----------
    fit_predict : callable ``(train_idx, test_idx) -> np.ndarray of shape (len(test_idx), n_classes)``
        Trains on ``train_idx`` and returns probabilities for ``test_idx``. Columns follow the global class
        indices; the model may return 0 (or NaN) for classes absent from its training part.
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Fold count and shuffling seed (see :func:`stratified_folds`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (to share folds between models).

    Returns
    -------
    np.ndarray, shape (n, n_classes), float64
        Rows sum to 1; every entry is at least ~``MISSING_CLASS_EPSILON``. With fewer than 2 examples
        (no fold is possible) each row is uniform.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = y.shape[0]
    splits = list(folds) if folds is not None else stratified_folds(y, k, seed)
    out = np.full((n, n_classes), np.nan)
    if not splits:
        return np.full((n, n_classes), 1.0 / n_classes)
    for train_idx, test_idx in splits:
        fold_probs = np.asarray(fit_predict(np.asarray(train_idx), np.asarray(test_idx)), dtype=np.float64)
        if fold_probs.shape != (len(test_idx), n_classes):
            raise ValueError(
                f"fit_predict returned shape {fold_probs.shape}, expected ({len(test_idx)}, {n_classes})"
            )
        out[test_idx] = fold_probs
    if np.isnan(out).all(axis=1).any():
        raise ValueError("the folds do not cover every example")
    return fill_missing_classes(out)

