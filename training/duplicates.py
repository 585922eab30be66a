"""Conflicting near-duplicates: groups of texts that are near-duplicates (cosine similarity of the
L2-normalised embeddings at least ``threshold``, or identical after :func:`normalise_text`) and carry
different labels: the clearest label errors there are, since one text cannot deserve two labels.

The search is exact: a blocked matrix product over the upper triangle of the similarity matrix (each pair
computed once, memory bounded by one block), on distinct embedding rows only. Outliers and classes too small
to learn are in :mod:`training.health`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DEFAULT_THRESHOLD = 0.95
# Rows per block of the similarity search: 4096 x 4096 float32 similarities is 64 MiB, and large blocks keep
# the matrix product efficient.
BLOCK = 4096
_SPACE = re.compile(r"\s+")


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

