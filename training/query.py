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


def confidence_scores(probs: np.ndarray, *, multi_label: bool = False) -> np.ndarray:
    """How sure the model is of its decision: the one definition of "confidence" in Relabel.

    The queue, the prediction API, the drift reference and the drift windows all report this number.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
        Softmax rows (single-label) or independent sigmoids (multi-label).
    multi_label : bool

    Returns
    -------
    np.ndarray, shape (n,)
        Single-label: the top class's probability, in ``[1/k, 1]``. Multi-label: the mean over classes of
        ``max(p, 1 - p)``, the probability of the decision taken on each class, in ``[0.5, 1]`` (with one
        class it is a binary model's top-class probability, so both tasks read alike). 1 when ``k = 0``.
    """
    p = _as_probs(probs)
    if p.shape[1] == 0:
        return np.ones(p.shape[0])
    if multi_label:
        return np.maximum(p, 1.0 - p).mean(axis=1)
    return p.max(axis=1)


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """One minus the top-class probability.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), rows summing to 1

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1 - 1/k]
    """
    return 1.0 - confidence_scores(probs)


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


def multilabel_margin_scores(probs: np.ndarray) -> np.ndarray:
    """One minus the distance of the most undecided class from its 0.5 threshold, doubled.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), independent per-class probabilities (sigmoid outputs)

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1]
        1 when some class sits at 0.5, 0 when every class is 0 or 1.
    """
    p = _as_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(p.shape[0])
    return np.clip(1.0 - 2.0 * np.abs(p - 0.5).min(axis=1), 0.0, 1.0)


def multilabel_least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """One minus the mean per-class confidence ``max(p, 1 - p)``, doubled.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k), independent per-class probabilities (sigmoid outputs)

    Returns
    -------
    np.ndarray, shape (n,), in [0, 1]
    """
    return np.clip(2.0 * (1.0 - confidence_scores(probs, multi_label=True)), 0.0, 1.0)


STRATEGIES: dict[str, Scorer] = {
    "entropy": entropy_scores,
    "margin": margin_scores,
    "least_confidence": least_confidence_scores,
    "multilabel_entropy": multilabel_uncertainty_scores,
    "multilabel_margin": multilabel_margin_scores,
    "multilabel_least_confidence": multilabel_least_confidence_scores,
}


def strategy_for(name: str, *, multi_label: bool) -> str:
    """The ``STRATEGIES`` key of a project's ``query_strategy`` for its task.

    Parameters
    ----------
    name : {"entropy", "margin", "least_confidence"}
    multi_label : bool
        Multi-label projects score independent sigmoids: their variants of the same idea.

    Returns
    -------
    str
    """
    key = f"multilabel_{name}" if multi_label and name in ("entropy", "margin", "least_confidence") else name
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of entropy, margin, least_confidence")
    return key


def score(strategy: str, probs: np.ndarray) -> np.ndarray:
    """Scores of one named strategy (see ``STRATEGIES``); higher = more worth labeling.

    Parameters
    ----------
    strategy : str
        A key of ``STRATEGIES``.
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
        ``confidence`` (:func:`confidence_scores`) and the task's ``entropy``, ``margin`` and
        ``least_confidence`` strategy scores (higher = more worth labeling; see ``STRATEGIES``); single-label
        also ``predicted`` (argmax).
    """
    p = _as_probs(probs)
    if multi_label:
        return {
            "confidence": confidence_scores(p, multi_label=True),
            "entropy": multilabel_uncertainty_scores(p),
            "margin": multilabel_margin_scores(p),
            "least_confidence": multilabel_least_confidence_scores(p),
        }
    return {
        "predicted": p.argmax(axis=1),
        "confidence": confidence_scores(p),
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


def ranked_batches(
    probs: np.ndarray,
    n: int,
    *,
    strategy: str = "entropy",
    embeddings: np.ndarray | None = None,
    diverse: bool = True,
    block: int = 25,
    candidate_factor: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Order ``n`` items so that every prefix is a good batch: informative first, and diverse.

    A queue is drained from the front a few items at a time, so one diverse set of ``n`` ordered by
    uncertainty would hand the first annotator the most uncertain members of it, which crowd into the same
    confusing region. Instead the order is built block by block: each block of ``block`` items is
    :func:`select_batch` (the ``candidate_factor * block`` most uncertain items still free, clustered) over
    what earlier blocks left. Without ``diverse`` or ``embeddings`` it is the plain ranking.

    Parameters
    ----------
    probs : np.ndarray, shape (m, k)
    n : int
        How many items to order (capped at ``m``).
    strategy : str
        A key of ``STRATEGIES``.
    embeddings : np.ndarray, shape (m, d), optional
    diverse : bool
    block : int
        Items per diverse block (>= 1).
    candidate_factor : int
    seed : int

    Returns
    -------
    np.ndarray, shape (min(n, m),) int
        Distinct pool indices, in the order they should be offered.
    """
    p = np.asarray(probs, dtype=np.float64)
    m = p.shape[0]
    n = min(int(n), m)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if not diverse or embeddings is None:
        return rank_by_uncertainty(score(strategy, p), p)[:n]
    x = np.asarray(embeddings)
    if x.shape[0] != m:
        raise ValueError(f"{x.shape[0]} embeddings for {m} probability rows")
    free = np.arange(m)
    order: list[np.ndarray] = []
    taken = 0
    step = 0
    while taken < n:
        size = min(max(1, int(block)), n - taken)
        picked = free[select_batch(p[free], size, strategy=strategy, embeddings=x[free], diverse=True,
                                   candidate_factor=candidate_factor, seed=seed + step)]
        order.append(picked)
        taken += picked.size
        free = np.setdiff1d(free, picked, assume_unique=True)
        step += 1
    return np.concatenate(order)


def representative_sample(embeddings: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` items that cover embedding space, for a cold start when the model's uncertainty means little.

    k-means with ``n`` clusters on L2-normalised embeddings (mini-batch k-means on large pools); each
    cluster gives the item nearest its centre. The largest clusters come first, so a short prefix covers
    the densest regions.

    Parameters
    ----------
    embeddings : np.ndarray, shape (m, d)
    n : int
        Sample size (capped at ``m``).
    seed : int

    Returns
    -------
    np.ndarray, shape (min(n, m),) int
        Distinct indices.
    """
    from sklearn.cluster import MiniBatchKMeans

    x = np.asarray(embeddings, dtype=np.float64)
    m = x.shape[0]
    n = min(int(n), m)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n == m:
        return np.arange(m)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if m > 10_000:
            model = MiniBatchKMeans(n_clusters=n, n_init=1, random_state=seed, batch_size=4096).fit(x)
        else:
            model = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(x)
    distance = np.linalg.norm(x - model.cluster_centers_[model.labels_], axis=1)
    sizes = np.bincount(model.labels_, minlength=n)
    chosen: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(model.labels_ == cluster)
        if members.size:
            chosen.append(int(members[np.argmin(distance[members])]))
    if len(chosen) < n:  # exact duplicates leave clusters empty: fill from the rest in index order
        rest = np.setdiff1d(np.arange(m), chosen)
        chosen.extend(int(i) for i in rest[: n - len(chosen)])
    return np.asarray(chosen, dtype=np.int64)
