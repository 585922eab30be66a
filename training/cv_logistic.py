"""The logistic-regression views of the labels: out-of-fold probabilities from linear models on fixed
features (frozen encoder embeddings, or any dense or sparse matrix such as TF-IDF), with ``C`` chosen by
out-of-fold log loss; and one-vs-rest regressions for multi-label data.

The fold runner and the shared helpers are in :mod:`training.cv`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from training.cv import (
    MISSING_CLASS_EPSILON,
    Features,
    FitPredict,
    fill_missing_classes,
    log_loss_of,
    one_blas_thread,
    oos_probs,
)
from training.data import stratified_folds


def logistic_fit_predict(
    features: Features,
    labels: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> FitPredict:
    """A ``fit_predict`` for :func:`oos_probs`: multinomial logistic regression on fixed features.

    Parameters
    ----------
    features : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape (e.g. TF-IDF)
    labels : np.ndarray, shape (n,) int
    n_classes : int
    C : float
        Inverse L2 regularisation strength (sklearn's convention).
    max_iter : int

    Returns
    -------
    callable ``(train_idx, test_idx) -> (len(test_idx), n_classes)`` probabilities
    """
    x: Features = sp.csr_matrix(features) if sp.issparse(features) else np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(test_idx), n_classes))
        seen = np.unique(y[train_idx])
        if seen.size == 1:
            # One class in the training part: the only prediction such a model can make.
            probs[:, seen[0]] = 1.0
            return probs
        model = LogisticRegression(C=C, max_iter=max_iter)
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train_idx], y[train_idx])
            probs[:, model.classes_] = model.predict_proba(x[test_idx])
        return probs

    return fit_predict


def select_regularization(
    embeddings: Features,
    labels: np.ndarray,
    *,
    grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    k: int = 3,
    seed: int = 0,
) -> float:
    """Choose the logistic-regression ``C`` with the lowest cross-validated log-loss.

    Log-loss rather than accuracy because the probabilities themselves feed cleanlab and the queue.
    Choosing ``C`` on the same rows that later get out-of-sample probabilities leaks one scalar, which
    is the usual (and negligible) price of not nesting a second cross-validation.

    Parameters
    ----------
    embeddings : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape
    labels : np.ndarray, shape (n,) int
    grid : candidate ``C`` values
    k, seed : folds and seed of the inner cross-validation

    Returns
    -------
    float
        The best ``C``; ``1.0`` when the data are too small to compare (fewer than 2 folds possible).
    """
    y = np.asarray(labels, dtype=np.int64)
    n_classes = int(y.max()) + 1 if y.size else 1
    folds = stratified_folds(y, k, seed)
    if not folds or np.unique(y).size < 2:
        return 1.0
    best_c, best_loss = 1.0, np.inf
    for c in grid:
        probs = oos_probs(logistic_fit_predict(embeddings, y, n_classes, C=c), y, n_classes, folds=folds)
        loss = log_loss_of(probs, y)
        if loss < best_loss - 1e-9:
            best_c, best_loss = float(c), loss
    return best_c


def oos_probs_logistic(
    features: Features,
    labels: np.ndarray,
    n_classes: int,
    *,
    C: float | Sequence[float] = 1.0,
    k: int = 5,
    seed: int = 0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    max_iter: int = 1000,
) -> tuple[np.ndarray, float]:
    """Out-of-sample logistic-regression probabilities, choosing ``C`` on the same folds.

    With several ``C`` values, they are tried in increasing order, every fold for each, and the ``C``
    whose out-of-fold probabilities have the lowest log loss is kept, with those probabilities as they
    are. The search stops at the first ``C`` that does worse than the one before it: held-out log loss
    falls and then rises as regularisation weakens, so the rest of the grid would only cost time.
    Picking one scalar on all rows is the only leak (as in :func:`select_regularization`, which pays for
    a separate inner cross-validation instead).

    Solvers: dense features use L-BFGS, each ``C`` from scratch (a warm start would stop L-BFGS at once:
    sklearn scales the penalty by ``1 / (C n)``, so the previous solution already meets the gradient
    tolerance). Sparse features (TF-IDF: tens of thousands of columns, where L-BFGS's per-iteration cost
    grows with the column count) use SAGA, each fold's fit warm-started from its fit at the previous
    ``C`` (SAGA stops on the change of the weights, so the warm start is sound). Both stop at tolerance
    ``1e-3``: against ``1e-4`` the held-out log loss moved in the fourth decimal at a third of the time.

    Parameters
    ----------
    features : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    C : float or sequence of float
        One inverse regularisation strength, or candidates to choose from.
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).
    max_iter : int

    Returns
    -------
    probs : np.ndarray, shape (n, n_classes)
        Rows sum to 1; with fewer than 2 examples each row is uniform.
    C : float
        The value used.
    """
    x: Features = sp.csr_matrix(features) if sp.issparse(features) else np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
    grid = sorted({float(c) for c in (C if isinstance(C, Sequence) else [C])})
    n = y.shape[0]
    splits = list(folds) if folds is not None else stratified_folds(y, k, seed)
    if not splits or not grid:
        return np.full((n, n_classes), 1.0 / n_classes), (grid or [1.0])[0]
    sparse = sp.issparse(x)
    models = [
        LogisticRegression(
            max_iter=max_iter, solver="saga" if sparse else "lbfgs", tol=1e-3, warm_start=sparse
        )
        for _ in splits
    ]
    best: tuple[np.ndarray, float] | None = None
    best_loss = previous_loss = np.inf
    for c in grid:
        out = np.full((n, n_classes), np.nan)
        for model, (train_idx, test_idx) in zip(models, splits, strict=True):
            seen = np.unique(y[train_idx])
            if seen.size == 1:  # one class in the training part: the only prediction such a model can make
                out[test_idx] = 0.0
                out[test_idx, seen[0]] = 1.0
                continue
            model.set_params(C=c)
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train_idx], y[train_idx])
                out[np.ix_(test_idx, model.classes_)] = model.predict_proba(x[test_idx])
        if np.isnan(out).all(axis=1).any():
            raise ValueError("the folds do not cover every example")
        probs = fill_missing_classes(out)
        loss = log_loss_of(probs, y)
        if loss < best_loss:
            best, best_loss = (probs, c), loss
        if loss > previous_loss:
            break
        previous_loss = loss
    assert best is not None
    return best


def oos_probs_frozen(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    C: float | Literal["auto"] = 1.0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities from a logistic-regression head on frozen embeddings.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
        Cached encoder embeddings of the labeled examples.
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    C : float or "auto"
        Inverse regularisation strength; ``"auto"`` picks it with :func:`select_regularization`.
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1; classes a fold's model never saw get ~``MISSING_CLASS_EPSILON``.
    """
    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(embeddings)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {y.shape[0]} labels")
    c = select_regularization(x, y, seed=seed) if C == "auto" else float(C)
    return oos_probs(logistic_fit_predict(x, y, n_classes, C=c), y, n_classes, k=k, seed=seed, folds=folds)


def oos_probs_frozen_multilabel(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    *,
    k: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> np.ndarray:
    """Out-of-sample per-class probabilities for multi-label data (one-vs-rest logistic regressions).

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
    labels : np.ndarray, shape (n, k_classes) 0/1 indicators
    n_classes : int, optional
        ``k_classes``, checked against ``labels`` when given (the same call shape as :func:`oos_probs_frozen`).
    k, seed : int
        Folds (plain shuffled K-fold: label sets do not stratify) and seed.
    C : float

    Returns
    -------
    np.ndarray, shape (n, k_classes)
        Independent probabilities in (0, 1). A class that is always (or never) present in a fold's
        training part gets its smoothed training frequency instead of a fitted model.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if y.ndim != 2 or (n_classes is not None and y.shape[1] != n_classes):
        raise ValueError(f"labels must have shape (n, {n_classes or 'k'}), got {y.shape}")
    n, n_classes = y.shape
    if n < 2:
        return np.full((n, n_classes), 0.5)
    splitter = KFold(n_splits=max(2, min(k, n)), shuffle=True, random_state=seed)
    out = np.zeros((n, n_classes))
    for train_idx, test_idx in splitter.split(x):
        for c in range(n_classes):
            target = y[train_idx, c]
            if target.min() == target.max():
                out[test_idx, c] = (target.sum() + 0.5) / (target.size + 1.0)
                continue
            model = LogisticRegression(C=C, max_iter=1000)
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train_idx], target)
                out[test_idx, c] = model.predict_proba(x[test_idx])[:, 1]
    return np.clip(out, MISSING_CLASS_EPSILON, 1.0 - MISSING_CLASS_EPSILON)

