"""Data health beyond label noise: conflicting near-duplicates, outliers and classes too small to learn.

Inputs are texts, given labels, embeddings (e.g. the frozen base encoder's, shape (n, d)) and out-of-sample
probabilities; outputs are plain data. Nothing here knows of Django.

- :func:`conflicting_duplicates`: groups of texts that are near-duplicates (cosine similarity of the
  L2-normalised embeddings at least ``threshold``, or identical after :func:`normalise_text`) and carry
  different labels: the clearest label errors there are, since one text cannot deserve two labels.
  The search is exact: a blocked matrix product over the upper triangle of the similarity matrix (each
  pair computed once, memory bounded by one block), on distinct embedding rows only.
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
import re
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

DEFAULT_THRESHOLD = 0.95
# Rows per block of the similarity search: 4096 x 4096 float32 similarities is 64 MiB, and large blocks keep
# the matrix product efficient.
BLOCK = 4096
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
_SPACE = re.compile(r"\s+")


# --- conflicting near-duplicates ---------------------------------------------------------------------------
def normalise_text(text: str) -> str:
    """The text as compared for identity: Unicode NFKC, case-folded, punctuation removed, whitespace collapsed.

    >>> normalise_text("  The  match, was GREAT! ")
    'the match was great'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in folded)
    return _SPACE.sub(" ", stripped).strip()


@dataclass
class ConflictGroup:
    """Near-duplicate texts that carry different labels.

    Attributes
    ----------
    indices : list of int, length m >= 2
        Positions of the members in the input, ascending.
    labels : list, length m
        The given label of each member, in the order of ``indices``.
    majority_label : label or None
        The label most members carry; ``None`` when two or more labels tie for most.
    score : float in [threshold, 1]
        The highest cosine similarity between two members with different labels (1.0 when two of them are
        identical after normalisation): how sure it is that one text got two labels.
    identical : bool
        Two members with different labels have the same normalised text.
    """

    indices: list[int]
    labels: list[Any]
    majority_label: Any
    score: float
    identical: bool

    @property
    def disagreeing(self) -> list[int]:
        """Members whose label is not the majority label (all members when there is no majority)."""
        if self.majority_label is None:
            return list(self.indices)
        majority = _label_key(self.majority_label)
        return [i for i, label in zip(self.indices, self.labels, strict=True) if _label_key(label) != majority]

    def to_dict(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "labels": list(self.labels), "majority_label": self.majority_label,
                "score": round(float(self.score), 6), "identical": self.identical}


def _label_key(label: Any) -> Hashable:
    """A hashable key of one given label: a name or index, or, for multi-label, the set of them."""
    if isinstance(label, list | tuple | set | frozenset | np.ndarray):
        return tuple(sorted(np.asarray(list(label)).tolist()))
    return label.item() if isinstance(label, np.generic) else label


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised rows as float32 (a zero row stays zero).

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)

    Returns
    -------
    np.ndarray, shape (n, d) float32
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n, d), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class _Components:
    """Union of edges over n nodes, compressed to a spanning star per component whenever it grows past a
    bound, so a dense cluster of near-duplicates (n^2 pairs) never holds more than O(n) edges."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.size = 0

    def add(self, rows: np.ndarray, cols: np.ndarray) -> None:
        if len(rows):
            self.rows.append(rows.astype(np.int64, copy=False))
            self.cols.append(cols.astype(np.int64, copy=False))
            self.size += len(rows)
            if self.size > 4 * self.n + 100_000:
                self._compress()

    def labels(self) -> np.ndarray:
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int64)
        cols = np.concatenate(self.cols) if self.cols else np.zeros(0, np.int64)
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(self.n, self.n))
        return connected_components(graph, directed=False)[1]

    def _compress(self) -> None:
        component = self.labels()
        # Each node points at its component's first node: the same components with at most n edges.
        nodes = np.arange(self.n)
        first = np.full(component.max() + 1, self.n, dtype=np.int64)
        np.minimum.at(first, component, nodes)
        keep = first[component] != nodes
        self.rows, self.cols = [nodes[keep]], [first[component][keep]]
        self.size = int(keep.sum())


def _similar_components(unit: np.ndarray, threshold: float, components: _Components, ids: np.ndarray,
                        block: int) -> None:
    """Add an edge for every pair of rows of ``unit`` with cosine similarity >= threshold (ids map rows to
    nodes). Blocks of the upper triangle only: the similarity matrix is symmetric."""
    n = len(unit)
    cut = np.float32(threshold - 1e-6)  # float32 products of identical unit vectors can read 0.9999999
    for start in range(0, n, block):
        left = unit[start:start + block]
        for other in range(start, n, block):
            sims = left @ unit[other:other + block].T
            rows, cols = np.nonzero(sims >= cut)
            rows += start
            cols += other
            upper = cols > rows
            components.add(ids[rows[upper]], ids[cols[upper]])


def conflicting_duplicates(texts: Sequence[str], labels: Sequence[Any], embeddings: np.ndarray, *,
                           threshold: float = DEFAULT_THRESHOLD, block: int = BLOCK) -> list[ConflictGroup]:
    """Groups of near-duplicate texts whose given labels differ.

    Two texts are near-duplicates when the cosine similarity of their L2-normalised embeddings is at least
    ``threshold`` or they are identical after :func:`normalise_text` (a text that normalises to nothing,
    e.g. only punctuation, is matched by its embedding only). Groups are the connected components of that
    relation; only components whose members carry two or more distinct labels are returned.

    Parameters
    ----------
    texts : sequence of str, length n
    labels : sequence, length n
        The given label of each text: a name or class index, or for multi-label data a list of them (two
        members conflict when their label sets differ).
    embeddings : np.ndarray, shape (n, d)
        Any sentence embeddings; rows are L2-normalised here.
    threshold : float in (0, 1]
        Minimum cosine similarity of near-duplicates. 0.95 keeps reformatted and lightly edited copies
        (a changed word, a signature) and leaves paraphrases out.
    block : int
        Rows per block of the similarity search (memory: ``block**2`` float32 values).

    Returns
    -------
    list of ConflictGroup
        Highest score first, then larger groups, then by first member.
    """
    n = len(texts)
    if len(labels) != n or len(embeddings) != n:
        raise ValueError(f"texts ({n}), labels ({len(labels)}) and embeddings ({len(embeddings)}) differ in length")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    keys = [_label_key(label) for label in labels]
    if n < 2 or len(set(keys)) < 2:
        return []
    unit = unit_rows(embeddings)
    components = _Components(n)

    # Identical after normalisation.
    normalised = [normalise_text(text) for text in texts]
    first: dict[str, int] = {}
    text_rows, text_cols = [], []
    for i, key in enumerate(normalised):
        if key:
            j = first.setdefault(key, i)
            if j != i:
                text_rows.append(j)
                text_cols.append(i)
    components.add(np.asarray(text_rows, dtype=np.int64), np.asarray(text_cols, dtype=np.int64))

    # Identical embeddings are one row of the search (a repeated text costs nothing).
    distinct, representative, inverse = np.unique(unit, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    nodes = np.arange(n)
    repeated = representative[inverse] != nodes
    components.add(nodes[repeated], representative[inverse][repeated])
    _similar_components(distinct, threshold, components, representative.astype(np.int64), block)

    component = components.labels()
    groups: list[ConflictGroup] = []
    sizes = np.bincount(component)
    for c in np.flatnonzero(sizes >= 2):
        members = np.flatnonzero(component == c)
        member_keys = [keys[i] for i in members]
        if len(set(member_keys)) < 2:
            continue
        groups.append(_group(members, member_keys, labels, normalised, unit))
    groups.sort(key=lambda g: (-g.score, -len(g.indices), g.indices[0]))
    return groups


def _group(members: np.ndarray, member_keys: list[Hashable], labels: Sequence[Any], normalised: list[str],
           unit: np.ndarray) -> ConflictGroup:
    counts = Counter(member_keys).most_common()
    majority = counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None
    majority_label = None if majority is None else labels[int(members[member_keys.index(majority)])]
    by_text: dict[str, set[Hashable]] = {}
    for i, key in zip(members, member_keys, strict=True):
        if normalised[i]:
            by_text.setdefault(normalised[i], set()).add(key)
    identical = any(len(found) > 1 for found in by_text.values())
    if identical:
        score = 1.0
    else:
        # A chain of near-duplicates changes label somewhere along it, so some pair of members with
        # different labels is itself a near-duplicate: its similarity is the group's score. Huge groups are
        # scored on their first members.
        head = members[:1000]
        sims = unit[head] @ unit[head].T
        codes = {key: code for code, key in enumerate(dict.fromkeys(member_keys))}
        head_keys = np.asarray([codes[key] for key in member_keys[: len(head)]])
        differ = head_keys[:, None] != head_keys[None, :]
        score = float(min(1.0, sims[differ].max())) if differ.any() else 1.0
    return ConflictGroup(indices=[int(i) for i in members], labels=[_plain(labels[int(i)]) for i in members],
                         majority_label=_plain(majority_label), score=score, identical=identical)


def _plain(label: Any) -> Any:
    """A label as plain Python (numpy scalars and arrays to int/str/list) so groups serialise to JSON."""
    if isinstance(label, np.ndarray):
        return label.tolist()
    if isinstance(label, np.generic):
        return label.item()
    if isinstance(label, tuple):
        return list(label)
    return label


# --- outliers and class health -----------------------------------------------------------------------------
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
