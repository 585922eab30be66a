"""Data health beyond label noise: conflicting near-duplicates, outliers and classes too small to learn.

Inputs are texts, given labels, embeddings (e.g. the frozen base encoder's, shape (n, d)) and out-of-sample
probabilities; outputs are plain data. Nothing here knows of Django.

- :func:`training.duplicates.conflicting_duplicates`: groups of texts that are near-duplicates and carry
  different labels (in their own module, with the exact similarity search).
- :func:`dataset_health`: cleanlab Datalab's ``outlier`` and ``class_imbalance`` issue types over the
  embeddings and labels: per-example outlier scores (average cosine distance to the k nearest neighbours,
  flagged by Datalab's interquartile rule) and the classes too small to learn.

Datalab needs the optional ``datasets`` package (``cleanlab[datalab]``). Where it cannot be imported (or
fails on this data) the same two rules are computed with cleanlab's public pieces and Datalab's defaults,
on the same kNN graph, so the findings are the same; the report's ``method`` says which ran.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from training.duplicates import unit_rows

# Datalab's defaults (cleanlab.datalab.internal.issue_manager): the outlier rule flags an average kNN
# distance above Q3 + (1 / 0.37037 - 1) * IQR; the class-imbalance rule flags the rarest class when its
# share is under 0.1 of an even share (1 / K).
OUTLIER_IQR_THRESHOLD = 0.37037
CLASS_IMBALANCE_THRESHOLD = 0.1
DEFAULT_K = 10
# Outlier scores need a density estimate, not every pair: past this many examples the neighbours are
# searched among a fixed random sample of this size (exact below it).
MAX_REFERENCE = 10_000
# Fewer labeled examples than this in a class: too few to learn it and to check it on held-out folds.
MIN_EXAMPLES_PER_CLASS = 10



def knn_graph(embeddings: np.ndarray, *, k: int = DEFAULT_K, max_reference: int = MAX_REFERENCE,
              seed: int = 0) -> csr_matrix:
    """The k nearest neighbours of every row by cosine distance, as the sparse graph Datalab reads.

    Exact up to ``max_reference`` rows; past that, each row's neighbours are searched among a fixed random
    sample of ``max_reference`` rows (an outlier score needs a density estimate, not every pair). A row is
    never its own neighbour; exact copies of it are (at distance 0).

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d), n >= 2
    k : int
        Neighbours per row (at most n - 1).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n)
        Row i holds k entries: cosine distances (1 - cosine similarity) to its neighbours, ascending.
    """
    from sklearn.neighbors import NearestNeighbors

    unit = unit_rows(embeddings)
    n = len(unit)
    if n < 2:
        raise ValueError("a kNN graph needs at least two rows")
    if n <= max_reference:
        k = min(k, n - 1)
        # Euclidean distance on unit vectors orders neighbours as cosine distance does (d^2 = 2 - 2 cos), and
        # it takes scikit-learn's fast path.
        distances, indices = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(unit).kneighbors()
    else:
        k = min(k, max_reference - 1)
        reference = np.sort(np.random.default_rng(seed).choice(n, size=max_reference, replace=False))
        found_d, found_i = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(unit[reference]).kneighbors(unit)
        found_i = reference[found_i]
        drop = found_i == np.arange(n)[:, None]
        drop[~drop.any(axis=1), -1] = True  # a row outside the sample: keep its first k
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        distances = np.take_along_axis(found_d, order, axis=1)
        indices = np.take_along_axis(found_i, order, axis=1)
    cosine = np.clip(distances.astype(np.float64) ** 2 / 2.0, 0.0, 2.0)
    return csr_matrix((cosine.ravel(), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))


def _outliers_by_rule(graph: csr_matrix) -> tuple[np.ndarray, np.ndarray, float]:
    """Datalab's feature-based outlier rule (defaults t=1, threshold 0.37037) on a kNN graph: scores
    ``exp(-mean distance / median mean distance)``, flags above ``Q3 + (1/0.37037 - 1) * IQR``."""
    from cleanlab.outlier import transform_distances_to_scores
    from scipy.stats import iqr

    n = graph.shape[0]
    average = np.asarray(graph.data, dtype=np.float64).reshape(n, -1).mean(axis=1)
    issue_threshold = float(np.percentile(average, 75) + (1 / OUTLIER_IQR_THRESHOLD - 1) * iqr(average))
    scaling = float(max(np.median(average), 100 * np.finfo(np.float64).eps))
    scores = transform_distances_to_scores(average, t=1, scaling_factor=scaling)
    return np.asarray(scores, dtype=np.float64), average > issue_threshold, issue_threshold


def _imbalance_by_rule(labels: np.ndarray) -> tuple[int, float, bool]:
    """Datalab's class-imbalance rule over the classes present: the rarest one (ties: lowest index) is an
    issue when its share is under 0.1 / K."""
    present, counts = np.unique(labels, return_counts=True)
    shares = counts / counts.sum()
    rarest = int(np.argmin(shares))
    return int(present[rarest]), float(shares[rarest]), bool(shares[rarest] < CLASS_IMBALANCE_THRESHOLD / len(present))


def _datalab_available() -> bool:
    try:
        from cleanlab.datalab.datalab import Datalab  # noqa: F401 - needs the optional `datasets` package
    except ImportError:
        return False
    return True


def _with_datalab(graph: csr_matrix, unit: np.ndarray, labels: np.ndarray | None, label_names: list[str],
                  k: int) -> tuple[np.ndarray, np.ndarray, float, tuple[int, float, bool] | None]:
    from cleanlab import Datalab

    issue_types: dict[str, Any] = {"outlier": {"k": k}}
    if labels is not None:
        data: dict[str, Any] = {"label": [label_names[int(i)] for i in labels]}
        issue_types["class_imbalance"] = {}
        lab = Datalab(data=data, label_name="label", verbosity=0)
    else:
        lab = Datalab(data={"row": list(range(len(unit)))}, verbosity=0)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(features=unit, knn_graph=graph, issue_types=issue_types)
    issues = lab.get_issues()
    scores = issues["outlier_score"].to_numpy(dtype=np.float64)
    flags = issues["is_outlier_issue"].to_numpy(dtype=bool)
    issue_threshold = float(lab.get_info("outlier")["issue_threshold"])
    imbalance = None
    if labels is not None:
        info = lab.get_info("class_imbalance")
        rarest_name = str(info["Rarest Class"])
        flagged = bool(issues["is_class_imbalance_issue"].any())
        if rarest_name in label_names:
            rarest = label_names.index(rarest_name)
        else:  # Datalab names "NA" when nothing is flagged: the rarest class by the same rule
            rarest = _imbalance_by_rule(labels)[0]
        imbalance = (rarest, float(np.mean(labels == rarest)), flagged)
    return scores, flags, issue_threshold, imbalance


def dataset_health(embeddings: np.ndarray, probs: np.ndarray | None, labels: Sequence[Any] | np.ndarray,
                   label_names: Sequence[str], *, multi_label: bool = False, k: int = DEFAULT_K, top: int = 200,
                   min_examples: int = MIN_EXAMPLES_PER_CLASS, max_reference: int = MAX_REFERENCE,
                   use_datalab: bool | None = None) -> dict[str, Any]:
    """Outliers (texts that belong to no class) and class health, as cleanlab Datalab finds them.

    Runs Datalab's ``outlier`` issue type on the embeddings (average cosine distance to the k nearest
    neighbours, see :func:`knn_graph`) and ``class_imbalance`` on the labels. A class is *too small to
    learn* when Datalab flags it as the rarest class (share under a tenth of an even share) or when it has
    fewer than ``min_examples`` labeled examples (including none at all).

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
    probs : np.ndarray, shape (n, K), or None
        Out-of-sample probabilities; they give each outlier the class the model leans to and how strongly
        (Datalab's two issue types read the features and labels only once features are given).
    labels : shape (n,) class indices, or for ``multi_label`` a length-n sequence of index lists
    label_names : sequence of str, length K
    multi_label : bool
        Several labels per example: the class-imbalance rule is applied to label frequencies (Datalab has
        no class-imbalance check for multi-label data).
    k : int
        Neighbours of the outlier score (Datalab's default 10).
    top : int
        How many of the most outlying examples the report keeps.
    min_examples : int
    max_reference : int
        See :func:`knn_graph`.
    use_datalab : bool or None
        ``None``: Datalab when it can be imported, else the same rules computed here.

    Returns
    -------
    dict, JSON-able
        ``method`` ("datalab" or "cleanlab-rules"), ``n``, ``seconds``; ``outliers``: ``n_flagged``, ``k``,
        ``metric``, ``issue_threshold`` (mean kNN distance above which an example is an outlier),
        ``reference`` (rows searched for neighbours), ``top`` (worst first: ``index``, ``score`` in [0, 1],
        low = outlying, ``average_distance``, ``is_outlier``, ``predicted``, ``confidence``); ``classes``
        (per class ``label``, ``n``, ``share``, ``too_small``, ``reasons``), ``class_imbalance`` (the rarest
        class, its share, Datalab's ``threshold_share`` and whether it is ``flagged``) and ``too_small``
        (names).
    """
    start = time.perf_counter()
    names = [str(name) for name in label_names]
    unit = unit_rows(embeddings)
    n = len(unit)
    if len(labels) != n:
        raise ValueError(f"labels ({len(labels)}) and embeddings ({n}) differ in length")
    if probs is not None and len(probs) != n:
        raise ValueError(f"probs ({len(probs)}) and embeddings ({n}) differ in length")
    if multi_label:
        index_lists = [[int(j) for j in row] for row in labels]
        counts = np.zeros(len(names), dtype=np.int64)
        for given in index_lists:
            counts[sorted(set(given))] += 1
        single = None
    else:
        single = np.asarray(labels, dtype=np.int64).reshape(-1)
        counts = np.bincount(single, minlength=len(names)) if n else np.zeros(len(names), np.int64)
    notes: list[str] = []
    seconds: dict[str, float] = {}

    method = "cleanlab-rules"
    outliers: dict[str, Any] = {"n_flagged": 0, "k": 0, "metric": "cosine", "issue_threshold": None,
                                "reference": 0, "top": []}
    imbalance: tuple[int, float, bool] | None = None
    if n >= 3:
        tick = time.perf_counter()
        graph = knn_graph(unit, k=k, max_reference=max_reference)
        k_used = graph.nnz // n
        seconds["knn"] = round(time.perf_counter() - tick, 3)
        tick = time.perf_counter()
        wanted = _datalab_available() if use_datalab is None else use_datalab
        result = None
        if wanted:
            try:
                result = _with_datalab(graph, unit, single, names, k_used)
                method = "datalab"
            except Exception as error:  # noqa: BLE001 - an optional engine: fall back to the same rules
                notes.append(f"Datalab failed ({type(error).__name__}: {error}); the same rules ran without it")
        if result is None:
            scores, flags, issue_threshold = _outliers_by_rule(graph)
            imbalance = _imbalance_by_rule(single) if single is not None else None
        else:
            scores, flags, issue_threshold, imbalance = result
        seconds["issues"] = round(time.perf_counter() - tick, 3)
        average = np.asarray(graph.data, dtype=np.float64).reshape(n, -1).mean(axis=1)
        worst = np.lexsort((np.arange(n), scores))[:top]
        top_rows: list[dict[str, Any]] = []
        for i in worst:
            row: dict[str, Any] = {"index": int(i), "score": round(float(scores[i]), 6),
                                   "average_distance": round(float(average[i]), 6), "is_outlier": bool(flags[i]),
                                   "predicted": None, "confidence": None}
            if probs is not None and not multi_label and len(names):
                best = int(np.argmax(probs[i]))
                row["predicted"], row["confidence"] = names[best], round(float(probs[i][best]), 6)
            top_rows.append(row)
        outliers = {"n_flagged": int(flags.sum()), "k": k_used, "metric": "cosine",
                    "issue_threshold": round(issue_threshold, 6), "reference": min(n, max_reference), "top": top_rows}
    else:
        notes.append("fewer than 3 examples: no outlier search")

    if imbalance is None:
        present = counts > 0
        if present.any():
            shares_present = counts / max(1, counts.sum())
            rarest = int(np.flatnonzero(present)[np.argmin(shares_present[present])])
            share = float(shares_present[rarest])
            imbalance = (rarest, share, share < CLASS_IMBALANCE_THRESHOLD / int(present.sum()))
    total = max(1, int(counts.sum()))
    n_present = int((counts > 0).sum())
    threshold_share = CLASS_IMBALANCE_THRESHOLD / max(1, n_present)
    classes = []
    for j, name in enumerate(names):
        reasons = []
        if counts[j] == 0:
            reasons.append("no labeled example")
        elif counts[j] < min_examples:
            reasons.append(f"only {int(counts[j])} labeled example{'s' if counts[j] != 1 else ''}: fewer than "
                           f"{min_examples}, too few to learn and to check on held-out folds")
        if imbalance is not None and imbalance[2] and imbalance[0] == j:
            reasons.append(f"the rarest class at {counts[j] / total:.1%} of labels, under cleanlab's "
                           f"class-imbalance threshold of {threshold_share:.1%} (a tenth of an even share)")
        classes.append({"label": name, "n": int(counts[j]), "share": round(float(counts[j] / total), 6),
                        "too_small": bool(reasons), "reasons": reasons})
    class_imbalance = None
    if imbalance is not None:
        class_imbalance = {"rarest": names[imbalance[0]], "n": int(counts[imbalance[0]]),
                           "share": round(imbalance[1], 6), "threshold_share": round(threshold_share, 6),
                           "flagged": imbalance[2]}
    seconds["total"] = round(time.perf_counter() - start, 3)
    return {"method": method, "n": n, "outliers": outliers, "classes": classes, "class_imbalance": class_imbalance,
            "too_small": [c["label"] for c in classes if c["too_small"]], "notes": notes, "seconds": seconds}

