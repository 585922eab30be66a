"""Uncertainty scores and batch selection for active learning.

Every strategy has the same signature, ``probs (n, k) -> scores (n,)``, and the same direction:
higher means more worth labeling. :func:`select_batch` turns scores into a batch, optionally spread
over embedding space so one batch is not many copies of one confusing template.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.special import entr
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

Scorer = Callable[[np.ndarray], np.ndarray]


def _as_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (n, k), got {p.shape}")
    return np.clip(p, 0.0, 1.0)


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy normalised by ``log k``.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), rows summing to 1

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1]
        1 for a uniform row, 0 for a one-hot row (and for ``k = 1``).
    """
    p = _as_probs(probs)
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    return np.clip(entr(p).sum(axis=1) / np.log(p.shape[1]), 0.0, 1.0)


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """One minus the margin between the two most probable classes.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), rows summing to 1

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1]
        1 when the top two classes tie, 0 for a one-hot row (and for ``k = 1``).
    """
    p = _as_probs(probs)
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """One minus the top-class probability.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), rows summing to 1

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1 - 1/k]
    """
    p = _as_probs(probs)
    return 1.0 - p.max(axis=1) if p.shape[1] else np.zeros(p.shape[0])


def multilabel_uncertainty_scores(probs: np.ndarray) -> np.ndarray:
    """Mean binary entropy (in bits) of independent per-class probabilities.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), each entry the probability of one class (sigmoid outputs)

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1]
        1 when every class sits at 0.5, 0 when every class is certain.
    """
    p = _as_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(p.shape[0])
    bits = (entr(p) + entr(1.0 - p)) / np.log(2.0)
    return np.clip(bits.mean(axis=1), 0.0, 1.0)


STRATEGIES: dict[str, Scorer] = {
    "entropy": entropy_scores,
    "margin": margin_scores,
    "least_confidence": least_confidence_scores,
    "multilabel_entropy": multilabel_uncertainty_scores,
}


def score(strategy: str, probs: np.ndarray) -> np.ndarray:
    """Scores of one named strategy (see ``STRATEGIES``); higher = more worth labeling.

    Parameters
    ----------
    strategy : {"entropy", "margin", "least_confidence", "multilabel_entropy"}
    probs : np.ndarray, shape (n, k)

    Returns
    -------
    np.ndarray, shape (n,)
    """
    try:
        scorer = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}") from None
    return scorer(probs)


def uncertainty_summary(probs: np.ndarray, *, multi_label: bool = False) -> dict[str, np.ndarray]:
    """Everything the queue stores about a scored item, in one pass over the probabilities.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
        Softmax rows (single-label) or independent sigmoids (multi-label).
    multi_label : bool

    Returns
    -------
    dict of str to np.ndarray, each shape (n,)
        Single-label: ``predicted`` (argmax), ``confidence`` (top probability), ``entropy``, ``margin``
        and ``least_confidence`` scores. Multi-label: ``confidence`` (mean of ``max(p, 1 - p)``) and
        ``entropy`` (mean binary entropy).
    """
    p = _as_probs(probs)
    if multi_label:
        return {
            "confidence": np.maximum(p, 1.0 - p).mean(axis=1) if p.shape[1] else np.ones(p.shape[0]),
            "entropy": multilabel_uncertainty_scores(p),
        }
    return {
        "predicted": p.argmax(axis=1),
        "confidence": p.max(axis=1),
        "entropy": entropy_scores(p),
        "margin": margin_scores(p),
        "least_confidence": least_confidence_scores(p),
    }


def rank_by_uncertainty(scores: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices from most to least worth labeling, with deterministic tie-breaking.

    Ties in ``scores`` are broken by entropy (higher first), then by index (lower first), so equal
    margins do not fall back on an unstable sort order.

    Parameters
    ----------
    scores : np.ndarray, shape (n,)
    probs : np.ndarray, shape (n, k)

    Returns
    -------
    np.ndarray, shape (n,) int
    """
    s = np.asarray(scores, dtype=np.float64)
    tiebreak = entropy_scores(probs) if np.asarray(probs).shape[1] >= 2 else np.zeros_like(s)
    return np.lexsort((np.arange(s.size), -tiebreak, -s))


def random_batch(n_items: int, n: int, *, seed: int = 0) -> np.ndarray:
    """A uniformly random batch (the unbiased baseline, and the queue's ``random`` reason).

    Parameters
    ----------
    n_items : int
        Pool size.
    n : int
        Batch size (capped at ``n_items``).
    seed : int

    Returns
    -------
    np.ndarray, shape (min(n, n_items),) int, distinct indices
    """
    rng = np.random.default_rng(seed)
    return rng.choice(n_items, size=min(n, n_items), replace=False)


def select_batch(
    probs: np.ndarray,
    n: int,
    *,
    strategy: str = "entropy",
    embeddings: np.ndarray | None = None,
    diverse: bool = True,
    candidate_factor: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Choose ``n`` items to label: the most uncertain, spread over embedding space.

    With ``diverse`` and ``embeddings``, the ``candidate_factor * n`` most uncertain items are clustered
    into ``n`` groups (k-means on L2-normalised embeddings, weighted by uncertainty) and the most uncertain
    item of each group is taken, so near-duplicates of one confusing template fill one slot, not many.
    Should the clustering produce fewer than ``n`` non-empty groups (many exact duplicates), the remaining
    slots are filled by the most uncertain candidates not yet taken.

    Parameters
    ----------
    probs : np.ndarray, shape (m, k)
        Predicted probabilities of the pool.
    n : int
        Batch size.
    strategy : str
        A key of ``STRATEGIES``.
    embeddings : np.ndarray, shape (m, d), optional
        Needed for a diverse batch; without it the batch is the top ``n`` by score.
    diverse : bool
    candidate_factor : int
        How many candidates per slot go into the clustering (>= 1).
    seed : int
        Seeds k-means.

    Returns
    -------
    np.ndarray, shape (min(n, m),) int
        Distinct pool indices, most uncertain first.
    """
    p = np.asarray(probs, dtype=np.float64)
    m = p.shape[0]
    n = min(int(n), m)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    scores = score(strategy, p)
    order = rank_by_uncertainty(scores, p)
    if not diverse or embeddings is None or n == m:
        return order[:n]
    x = np.asarray(embeddings, dtype=np.float64)
    if x.shape[0] != m:
        raise ValueError(f"{x.shape[0]} embeddings for {m} probability rows")
    candidates = order[: min(m, max(n, candidate_factor * n))]
    if candidates.size == n:
        return candidates
    features = x[candidates]
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (exact duplicates) is handled below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=n, n_init=1, random_state=seed).fit_predict(
            features, sample_weight=scores[candidates] + 1e-6
        )
    # Candidates are in uncertainty order, so each cluster's first occurrence is its most uncertain member.
    _, first_of_cluster = np.unique(clusters, return_index=True)
    chosen = np.sort(first_of_cluster)
    if chosen.size < n:
        rest = np.setdiff1d(np.arange(candidates.size), chosen)
        chosen = np.sort(np.concatenate([chosen, rest[: n - chosen.size]]))
    return candidates[chosen]
