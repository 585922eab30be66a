"""Out-of-sample predicted probabilities for every labeled example (K-fold cross-validation).

cleanlab needs, for each labeled example, probabilities from a model that did not see that example.
:func:`oos_probs` runs any ``fit_predict(train_idx, test_idx)`` over stratified folds, so a caller can
plug in fine-tuned folds; :func:`oos_probs_frozen` is the cheap default: a logistic-regression head on
cached (frozen) encoder embeddings. :func:`oos_probs_knn` is a leave-one-out k-nearest-neighbour
estimate that makes a useful, differently-biased second opinion in :func:`ensemble_probs`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

#: Probability given to a class the fold's model could not predict (absent from its training part).
MISSING_CLASS_EPSILON = 1e-6

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train_idx, test_idx)`` pairs covering every example once as test.

    The number of folds is ``min(k, n, largest class count)`` and at least 2. Classes with fewer members
    than folds are spread over as many folds as they have members: each such example is still predicted
    by a model that saw the class's other members, which is the most any split can offer it (reducing
    the fold count to the smallest class would only shrink every training set). A class with a single
    member is absent from the model that predicts it; see ``MISSING_CLASS_EPSILON``.

    Parameters
    ----------
    labels : np.ndarray, shape (n,) int
    k : int
    seed : int

    Returns
    -------
    list of (np.ndarray, np.ndarray)
        Index arrays; an empty list when ``n < 2`` (nothing can be held out).
    """
    y = np.asarray(labels)
    n = y.shape[0]
    if n < 2:
        return []
    counts = np.bincount(y.astype(np.int64))
    n_splits = max(2, min(k, n, int(counts.max())))
    if counts.max() < 2:
        splitter: KFold | StratifiedKFold = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class in y has only 1 members": expected and handled, see above.
        warnings.simplefilter("ignore", UserWarning)
        return [(train, test) for train, test in splitter.split(np.zeros(n), y)]


def _fill_missing(probs: np.ndarray) -> np.ndarray:
    filled = np.where(np.isfinite(probs), probs, 0.0)
    filled = np.maximum(filled, MISSING_CLASS_EPSILON)
    return filled / filled.sum(axis=1, keepdims=True)


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
    return _fill_missing(out)


def logistic_fit_predict(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> FitPredict:
    """A ``fit_predict`` for :func:`oos_probs`: multinomial logistic regression on fixed features.

    Parameters
    ----------
    features : np.ndarray, shape (n, d)
    labels : np.ndarray, shape (n,) int
    n_classes : int
    C : float
        Inverse L2 regularisation strength (sklearn's convention).
    max_iter : int

    Returns
    -------
    callable ``(train_idx, test_idx) -> (len(test_idx), n_classes)`` probabilities
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(test_idx), n_classes))
        seen = np.unique(y[train_idx])
        if seen.size == 1:
            # One class in the training part: the only prediction such a model can make.
            probs[:, seen[0]] = 1.0
            return probs
        model = LogisticRegression(C=C, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train_idx], y[train_idx])
        probs[:, model.classes_] = model.predict_proba(x[test_idx])
        return probs

    return fit_predict


def select_regularization(
    embeddings: np.ndarray,
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
    embeddings : np.ndarray, shape (n, d)
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
        loss = float(-np.mean(np.log(probs[np.arange(y.size), y])))
        if loss < best_loss - 1e-9:
            best_c, best_loss = float(c), loss
    return best_c


def oos_probs_frozen(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    C: float | Literal["auto"] = 1.0,
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
    return oos_probs(logistic_fit_predict(x, y, n_classes, C=c), y, n_classes, k=k, seed=seed)


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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train_idx], target)
            out[test_idx, c] = model.predict_proba(x[test_idx])[:, 1]
    return np.clip(out, MISSING_CLASS_EPSILON, 1.0 - MISSING_CLASS_EPSILON)


def oos_probs_knn(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    n_neighbors: int = 10,
    smoothing: float = 0.1,
    neighbour_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Leave-one-out k-nearest-neighbour class probabilities (cosine similarity, similarity-weighted).

    Each example is scored only by its neighbours, never by itself, so the probabilities are
    out-of-sample without folds. Near-duplicates carrying different labels show up strongly here.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
    labels : np.ndarray, shape (n,) int
    n_classes : int
    n_neighbors : int
        Neighbours per example (capped at ``n - 1``).
    smoothing : float
        Pseudo-count spread evenly over classes so no class gets probability 0.
    neighbour_mask : np.ndarray of bool, shape (n,), optional
        Only these rows may serve as neighbours (e.g. leave out examples already flagged as label
        issues, so a second round is not voted by the errors it looks for). Every row is still scored.

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = x.shape[0]
    if n < 2:
        return np.full((n, n_classes), 1.0 / n_classes)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    allowed = np.ones(n, dtype=bool) if neighbour_mask is None else np.asarray(neighbour_mask, dtype=bool)
    candidates = np.flatnonzero(allowed)
    # A row that is itself a candidate cannot be its own neighbour, so it has one fewer to choose from.
    kk = min(n_neighbors, candidates.size - 1)
    out = np.zeros((n, n_classes))
    if kk < 1:
        return np.full((n, n_classes), 1.0 / n_classes)
    for start in range(0, n, 1024):
        block = slice(start, min(n, start + 1024))
        sims = x[block] @ x[candidates].T
        rows = np.arange(sims.shape[0])
        own = np.searchsorted(candidates, rows + start)
        is_candidate = (own < candidates.size) & (
            candidates[np.minimum(own, candidates.size - 1)] == rows + start
        )
        sims[rows[is_candidate], own[is_candidate]] = -np.inf
        neighbours = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        weights = np.clip(np.take_along_axis(sims, neighbours, axis=1), 0.0, None) + 1e-6
        np.add.at(out[block], (np.repeat(rows, kk), y[candidates[neighbours]].ravel()), weights.ravel())
    out += smoothing / n_classes
    return out / out.sum(axis=1, keepdims=True)


def ensemble_probs(
    list_of_probs: Sequence[np.ndarray], weights: Sequence[float] | None = None, *, multi_label: bool = False
) -> np.ndarray:
    """Weighted arithmetic mean of several probability matrices.

    Parameters
    ----------
    list_of_probs : sequence of np.ndarray, each shape (n, k)
    weights : sequence of float, optional
        Non-negative, one per matrix; equal weights by default.
    multi_label : bool
        Independent per-class probabilities: averaged, not renormalised per row.

    Returns
    -------
    np.ndarray, shape (n, k)
        Rows sum to 1 unless ``multi_label``.
    """
    if not list_of_probs:
        raise ValueError("need at least one probability matrix")
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in list_of_probs])
    w = np.ones(stack.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (stack.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per matrix, not all zero")
    mean = np.tensordot(w / w.sum(), stack, axes=1)
    return mean if multi_label else mean / mean.sum(axis=1, keepdims=True)
