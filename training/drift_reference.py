"""The drift reference kept with a model version: what "normal" traffic looks like to it.

:func:`build_drift_reference` summarises any set of rows the model scored (predicted class mix, a sample of
confidences, a small float16 sample of embeddings, tokenisation and malformed-text statistics) into a
:class:`DriftReference`, saved next to the version. The data a team labels through active learning is
deliberately unrepresentative (the queue picks the examples the model is least sure of), so a reference
built from the labeled validation split alone makes ordinary traffic look drifted; :func:`combine_drift_references`
pools several summaries, each standing for its share of a population: the unlabeled pool scored by the
version, plus the labeled data (its validation split, out-of-sample) for the examples that left the pool.
The tests that compare a window with it are in :mod:`training.drift_signals`; :func:`training.drift.drift_window`
runs them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from training.drift_text import MALFORMED_KINDS, malformed_text_counts, summarise_tokens, token_arrays
from training.query import confidence_scores

#: Nearest reference neighbours whose mean distance measures how novel a sample is.
NOVELTY_NEIGHBOURS = 5
#: A sample farther out than this quantile of the reference's own distances counts as novel.
NOVELTY_QUANTILE = 0.95


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def predicted_class_counts(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    """Shape (k,): rows predicted as each class (multi-label: probabilities of at least 0.5 per class)."""
    k = probs.shape[1]
    if multi_label:
        return (probs >= 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(probs.argmax(axis=1), minlength=k).astype(np.int64)



@dataclass
class DriftReference:
    """What "normal" looked like for one model version (built by :func:`build_drift_reference`).

    Attributes
    ----------
    label_names : list of str, length k
    class_counts : np.ndarray, shape (k,) int
        Predicted classes on the reference set (multi-label: positive predictions per class).
    confidences : np.ndarray, shape (<= max_confidences,) float32
        A sample of prediction confidences on the reference set.
    n : int
        Size of the reference set.
    embedding_sample : np.ndarray, shape (<= max_embeddings, d) float16, or (0, 0) when none was given
        L2-normalised embeddings of a random sample of the reference set. The embedding tests run in
        the full space on purpose: a projection fitted on the reference (PCA) keeps the directions the
        reference varies in and drops the new directions that unseen content moves into.
    token_summary : dict
        ``n_texts``, ``unk_token_rate``, ``texts_with_unk_share``, ``truncation_rate``, ``mean_length``,
        ``length_quantiles`` (empty when no token statistics were given).
    token_counts : np.ndarray, shape (<= max_confidences,) int32
        A sample of token counts (for the length test).
    malformed_counts : dict
        :func:`malformed_text_counts` of the reference texts (empty when none were given).
    n_texts : int
        Number of reference texts the malformed counts were taken over.
    multi_label : bool
    description : dict
        What the reference was built from, in JSON types (free-form; the caller names the data, e.g.
        ``{"kind": "pool", "n_pool": 1200}``). Kept with the files and shown next to every window.
    """

    label_names: list[str]
    class_counts: np.ndarray
    confidences: np.ndarray
    n: int
    embedding_sample: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float16))
    token_summary: dict[str, Any] = field(default_factory=dict)
    token_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    malformed_counts: dict[str, int] = field(default_factory=dict)
    n_texts: int = 0
    multi_label: bool = False
    description: dict[str, Any] = field(default_factory=dict)

    _ARRAYS = ("class_counts", "confidences", "embedding_sample", "token_counts")

    @property
    def class_shares(self) -> np.ndarray:
        """Shape (k,): the reference class mix (sums to 1 for single-label)."""
        total = self.class_counts.sum()
        return self.class_counts / total if total else np.zeros(len(self.label_names))

    @property
    def has_embeddings(self) -> bool:
        return self.embedding_sample.shape[0] >= 2

    @cached_property
    def sample(self) -> np.ndarray:
        """Shape (s, d) float64: the embedding sample, ready for distance computations."""
        return self.embedding_sample.astype(np.float64)

    @cached_property
    def bandwidth(self) -> float:
        """RBF bandwidth of the MMD test: the median pairwise distance of the sample (median heuristic)."""
        d = cdist(self.sample, self.sample)
        upper = d[np.triu_indices_from(d, k=1)]
        median = float(np.median(upper)) if upper.size else 1.0
        return median if median > 0 else 1.0

    @cached_property
    def knn_distances(self) -> np.ndarray:
        """Sorted leave-one-out mean distances of sample points to their nearest sample neighbours."""
        d = cdist(self.sample, self.sample)
        np.fill_diagonal(d, np.inf)
        kk = min(NOVELTY_NEIGHBOURS, d.shape[0] - 1)
        return np.sort(np.sort(d, axis=1)[:, :kk].mean(axis=1))

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON types (arrays as nested lists)."""
        out: dict[str, Any] = {
            "label_names": list(self.label_names),
            "n": self.n,
            "token_summary": self.token_summary,
            "malformed_counts": self.malformed_counts,
            "n_texts": self.n_texts,
            "multi_label": self.multi_label,
            "description": self.description,
        }
        for name in self._ARRAYS:
            array = getattr(self, name)
            out[name] = {
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        arrays = {
            name: np.asarray(data[name]["data"], dtype=data[name]["dtype"]).reshape(data[name]["shape"])
            for name in cls._ARRAYS
        }
        return cls._from_parts(data, arrays)

    @classmethod
    def _from_parts(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> DriftReference:
        """A reference from its scalars and summaries (``meta``) and its arrays."""
        return cls(
            label_names=list(meta["label_names"]),
            n=int(meta["n"]),
            token_summary=dict(meta["token_summary"]),
            malformed_counts={k: int(v) for k, v in meta["malformed_counts"].items()},
            n_texts=int(meta["n_texts"]),
            multi_label=bool(meta["multi_label"]),
            description=dict(meta.get("description") or {}),
            **arrays,
        )

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.json`` (scalars, names, summaries) and ``<stem>.npz`` (arrays).

        Parameters
        ----------
        path : str or Path
            Either suffix (or none) names the pair, e.g. ``version_dir / "drift_reference"``.

        Returns
        -------
        (Path, Path)
            The JSON and NPZ paths written.
        """
        stem = Path(path).with_suffix("")
        meta = {key: value for key, value in self.to_dict().items() if key not in self._ARRAYS}
        json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
        json_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
        np.savez_compressed(npz_path, **{name: getattr(self, name) for name in self._ARRAYS})
        return json_path, npz_path

    @classmethod
    def load(cls, path: str | Path) -> DriftReference:
        """Read a pair written by :meth:`save`."""
        stem = Path(path).with_suffix("")
        meta = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz")) as arrays:
            loaded = {name: arrays[name] for name in cls._ARRAYS}
        return cls._from_parts(meta, loaded)



def build_drift_reference(
    *,
    probs: np.ndarray,
    label_names: Sequence[str],
    embeddings: np.ndarray | None = None,
    token_stats: Any = None,
    texts: Sequence[str] | None = None,
    multi_label: bool = False,
    max_embeddings: int = 500,
    max_confidences: int = 2000,
    seed: int = 0,
    description: Mapping[str, Any] | None = None,
) -> DriftReference:
    """Summarise a set of rows the model scored into a :class:`DriftReference`.

    Use data the model did not train on (the unlabeled pool, production traffic, a validation split):
    confidences on training data are over-optimistic and would make every production window look less
    confident. Use data that looks like production: a labeled set chosen by active learning does not
    (see :func:`combine_drift_references`).

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
        The model's (calibrated) probabilities on the reference set.
    label_names : sequence of str, length k
    embeddings : np.ndarray, shape (n, d), optional
        Encoder embeddings of the same rows (enables the embedding test and :func:`sample_novelty`).
    token_stats : mapping or ``training.encoder.TokenStats``, optional
        ``token_count`` (n,) int (tokens before truncation), ``truncated`` (n,) bool, ``unk_count`` (n,) int
        of the same rows (``TokenStats``'s ``n_tokens``/``n_unknown`` are accepted too).
    texts : sequence of str, optional
        The texts (for the malformed-Unicode baseline).
    multi_label : bool
    max_embeddings, max_confidences : int
        Sample sizes kept (the reference must stay small enough to store with every model version).
    seed : int
    description : mapping, optional
        Stored as :attr:`DriftReference.description`.

    Returns
    -------
    DriftReference
    """
    p = np.asarray(probs, dtype=np.float64)
    names = list(label_names)
    if p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"probs must have shape (n, {len(names)}), got {p.shape}")
    rng = np.random.default_rng(seed)
    n = p.shape[0]
    confidences = confidence_scores(p, multi_label=multi_label)
    if n > max_confidences:
        confidences = rng.choice(confidences, size=max_confidences, replace=False)
    reference = DriftReference(
        label_names=names,
        class_counts=predicted_class_counts(p, multi_label),
        confidences=confidences.astype(np.float32),
        n=n,
        multi_label=multi_label,
        description=dict(description or {}),
    )
    if embeddings is not None:
        x = l2_normalise(np.asarray(embeddings, dtype=np.float64))
        if x.shape[0] != n:
            raise ValueError(f"{x.shape[0]} embeddings for {n} probability rows")
        sample = rng.choice(n, size=min(n, max_embeddings), replace=False)
        reference.embedding_sample = x[sample].astype(np.float16)
    if token_stats is not None:
        reference.token_summary = summarise_tokens(token_stats)
        counts, _, _ = token_arrays(token_stats)
        if counts.size > max_confidences:
            counts = rng.choice(counts, size=max_confidences, replace=False)
        reference.token_counts = counts.astype(np.int32)
    if texts is not None:
        reference.malformed_counts = malformed_text_counts(texts)
        reference.n_texts = len(texts)
    return reference


def _stratified_sample(
    arrays: Sequence[np.ndarray], weights: np.ndarray, cap: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Rows drawn from each array in proportion to its weight, without replacement, as many as the
    scarcest stratum allows (at most ``cap``). ``None`` when no array has rows."""
    usable = [(a, w) for a, w in zip(arrays, weights, strict=True) if a.shape[0] > 0 and w > 0]
    if not usable:
        return None
    total_weight = sum(w for _, w in usable)
    shares = [w / total_weight for _, w in usable]
    total = min(cap, int(min(a.shape[0] / share for (a, _), share in zip(usable, shares, strict=True))))
    picked = []
    for (array, _), share in zip(usable, shares, strict=True):
        take = min(array.shape[0], int(round(share * total)))
        picked.append(array[np.sort(rng.choice(array.shape[0], size=take, replace=False))])
    return np.concatenate(picked, axis=0)


def _effective_size(sizes: Sequence[int], weights: np.ndarray) -> int:
    """Kish's effective sample size of a stratified estimate: ``1 / sum(w_i^2 / n_i)``."""
    terms = [w**2 / n for n, w in zip(sizes, weights, strict=True) if n > 0 and w > 0]
    return max(1, int(round(1.0 / sum(terms)))) if terms else 0


def combine_drift_references(
    parts: Sequence[tuple[DriftReference, float]],
    *,
    max_embeddings: int = 500,
    max_confidences: int = 2000,
    seed: int = 0,
    description: Mapping[str, Any] | None = None,
) -> DriftReference:
    """One reference for a population made of strata, each summarised by its own reference.

    The use: the data production should look like is the unlabeled pool *plus* the examples that left it
    to be labeled. The pool is scored out-of-sample by the new version, but the labeled examples are
    training data; their validation split is the out-of-sample stand-in. Without that stratum the pool
    alone lacks exactly the hard examples active learning took out of it, and ordinary traffic (which
    still contains such examples) would look less confident than the reference.

    Each marginal is mixed separately (the tests use marginals only): class counts as the weighted mix of
    the strata's class rates, scaled to the effective sample size ``1 / sum(w_i^2 / n_i)`` (so a stratum
    known from 40 validation rows does not pose as 2,000 rows' worth of evidence); confidences, token
    counts and embeddings as a stratified sample without replacement, as large as the scarcest stratum
    allows. Strata without embeddings or token statistics are left out of those marginals (the weights
    of the others renormalised).

    Parameters
    ----------
    parts : sequence of (DriftReference, float)
        Each stratum's reference and the share of the population it stands for (any non-negative
        numbers; normalised). Parts with no rows or weight 0 are skipped. Same label names and task.
    max_embeddings, max_confidences : int
        Caps of the combined samples.
    seed : int
    description : mapping, optional
        Stored as :attr:`DriftReference.description`.

    Returns
    -------
    DriftReference
    """
    used = [(ref, float(w)) for ref, w in parts if ref.n > 0 and w > 0]
    if not used:
        raise ValueError("combine_drift_references needs at least one part with rows and a positive weight")
    first = used[0][0]
    for ref, _ in used[1:]:
        if list(ref.label_names) != list(first.label_names) or ref.multi_label != first.multi_label:
            raise ValueError("the parts describe different label sets or tasks")
    refs = [ref for ref, _ in used]
    weights = np.array([w for _, w in used]) / sum(w for _, w in used)
    rng = np.random.default_rng(seed)

    n = _effective_size([ref.n for ref in refs], weights)
    rates = sum(w * ref.class_counts / ref.n for ref, w in zip(refs, weights, strict=True))
    confidences = _stratified_sample([ref.confidences for ref in refs], weights, max_confidences, rng)
    combined = DriftReference(
        label_names=list(first.label_names),
        class_counts=np.rint(np.asarray(rates) * n).astype(np.int64),
        confidences=(confidences if confidences is not None else np.zeros(0)).astype(np.float32),
        n=n,
        multi_label=first.multi_label,
        description=dict(description or {}),
    )
    with_embeddings = np.array([ref.has_embeddings for ref in refs])
    if with_embeddings.any():
        sample = _stratified_sample(
            [ref.embedding_sample for ref in refs], weights * with_embeddings, max_embeddings, rng
        )
        assert sample is not None
        combined.embedding_sample = sample.astype(np.float16)

    with_tokens = np.array([ref.token_summary.get("n_texts", 0) > 0 for ref in refs])
    if with_tokens.any():
        token_weights = weights * with_tokens / (weights * with_tokens).sum()
        counts = _stratified_sample([ref.token_counts for ref in refs], token_weights, max_confidences, rng)
        counts = counts if counts is not None else np.zeros(0, dtype=np.int32)
        summary: dict[str, Any] = {
            "n_texts": _effective_size([ref.token_summary.get("n_texts", 0) for ref in refs], token_weights)
        }
        for key in ("unk_token_rate", "texts_with_unk_share", "truncation_rate", "mean_length"):
            summary[key] = float(
                sum(w * ref.token_summary[key] for ref, w in zip(refs, token_weights, strict=True) if w > 0)
            )
        if counts.size:
            summary["length_quantiles"] = {
                str(q): float(np.quantile(counts, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
            }
        combined.token_summary = summary
        combined.token_counts = counts.astype(np.int32)

    with_texts = np.array([ref.n_texts > 0 for ref in refs])
    if with_texts.any():
        text_weights = weights * with_texts / (weights * with_texts).sum()
        n_texts = _effective_size([ref.n_texts for ref in refs], text_weights)
        kinds = [*MALFORMED_KINDS, "any"]
        combined.malformed_counts = {
            kind: int(
                round(
                    n_texts
                    * sum(
                        w * ref.malformed_counts.get(kind, 0) / ref.n_texts
                        for ref, w in zip(refs, text_weights, strict=True)
                        if w > 0
                    )
                )
            )
            for kind in kinds
        }
        combined.n_texts = n_texts
    return combined

