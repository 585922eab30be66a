"""The kNN view of the labels: leave-one-out k-nearest-neighbour class probabilities on the embeddings
(cosine similarity, similarity-weighted votes), out-of-sample without folds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from training.cv import log_loss_of, one_blas_thread

#: Neighbour counts :func:`oos_probs_knn` compares when ``n_neighbors="auto"``.
KNN_GRID: tuple[int, ...] = (5, 10, 20, 50)


def _nearest(x: np.ndarray, candidates: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``kk`` most similar candidates (never itself), most similar first: (index, cosine)."""
    n = x.shape[0]
    index = np.zeros((n, kk), dtype=np.int64)
    cosine = np.zeros((n, kk))
    with one_blas_thread():
        for start in range(0, n, 1024):
            block = slice(start, min(n, start + 1024))
            sims = x[block] @ x[candidates].T
            rows = np.arange(sims.shape[0])
            own = np.searchsorted(candidates, rows + start)
            is_candidate = (own < candidates.size) & (
                candidates[np.minimum(own, candidates.size - 1)] == rows + start
            )
            sims[rows[is_candidate], own[is_candidate]] = -np.inf
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            index[block] = candidates[np.take_along_axis(top, order, axis=1)]
            cosine[block] = np.take_along_axis(top_sims, order, axis=1)
    return index, cosine


def _knn_vote(
    labels: np.ndarray, index: np.ndarray, cosine: np.ndarray, n_classes: int, kk: int, smoothing: float
) -> np.ndarray:
    n = index.shape[0]
    out = np.zeros((n, n_classes))
    weights = np.clip(cosine[:, :kk], 0.0, None) + 1e-6
    np.add.at(out, (np.repeat(np.arange(n), kk), labels[index[:, :kk]].ravel()), weights.ravel())
    out += smoothing / n_classes
    return out / out.sum(axis=1, keepdims=True)


def oos_probs_knn(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    n_neighbors: int | Literal["auto"] = 10,
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
    n_neighbors : int or "auto"
        Neighbours per example (capped at ``n - 1``). ``"auto"`` takes the count in :data:`KNN_GRID` whose
        leave-one-out probabilities have the lowest log loss against the given labels (one similarity
        pass serves every count): few neighbours suit small classes and near-duplicates, many suit short,
        noisy texts whose nearest neighbour is often of another class.
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
    return knn_probs_with_count(embeddings, labels, n_classes, n_neighbors, smoothing, neighbour_mask)[0]


def knn_probs_with_count(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    n_neighbors: int | Literal["auto"],
    smoothing: float,
    neighbour_mask: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """:func:`oos_probs_knn`'s probabilities and the neighbour count used (0: too few rows, uniform)."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = x.shape[0]
    uniform = np.full((n, n_classes), 1.0 / n_classes)
    if n < 2:
        return uniform, 0
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    allowed = np.ones(n, dtype=bool) if neighbour_mask is None else np.asarray(neighbour_mask, dtype=bool)
    candidates = np.flatnonzero(allowed)
    # A row that is itself a candidate cannot be its own neighbour, so it has one fewer to choose from.
    grid = KNN_GRID if n_neighbors == "auto" else (int(n_neighbors),)
    counts = [c for c in sorted({min(c, candidates.size - 1) for c in grid}) if c >= 1]
    if not counts:
        return uniform, 0
    index, cosine = _nearest(x, candidates, counts[-1])
    best, best_count, best_loss = uniform, 0, np.inf
    for count in counts:
        probs = _knn_vote(y, index, cosine, n_classes, count, smoothing)
        loss = log_loss_of(probs, y) if len(counts) > 1 else 0.0
        if loss < best_loss - 1e-9:
            best, best_count, best_loss = probs, count, loss
    return best, best_count

