"""Drift signals for windows of production traffic, against a reference kept with the model version.

A :class:`DriftReference` summarises what "normal" traffic looks like to one model version: its predicted
classes and confidences there, a small sample of embeddings (float16), and tokenisation statistics.
:func:`drift_window` compares one window of production samples (~200) with it and says, in words a
person can act on, whether anything moved:

========================  ==========================================  ======================================
signal                    test (p-value)                              effect size that must also be exceeded
========================  ==========================================  ======================================
predicted class mix       chi-square test of homogeneity              Jensen-Shannon distance (base 2)
confidence                two-sample Kolmogorov-Smirnov               KS statistic
embeddings                MMD (RBF kernel), permutation p-value       none
novel samples             binomial: share beyond the reference's      excess over the expected 5%
                          own 95% nearest-neighbour distance
text length (tokens)      two-sample Kolmogorov-Smirnov               KS statistic
truncated texts           one-sided binomial vs the reference share   absolute increase of the share
texts with [UNK] tokens   one-sided binomial vs the reference share   absolute increase of the share
malformed Unicode         one-sided binomial vs the reference share   absolute increase of the share
========================  ==========================================  ======================================

Every window runs all of these tests at once, so the p-values are corrected for multiplicity with
Holm's step-down procedure (:func:`holm_bonferroni`): sorted ascending, the j-th smallest of ``m``
p-values is compared with ``alpha / (m - j)`` and the procedure stops at the first that is not below its
level. A window drawn from the reference distribution then alerts with probability at most ``alpha``
(the family-wise error rate, whatever the dependence between the tests), and Holm never misses a
shift that plain Bonferroni (every p-value against ``alpha / m``) would catch. A test alerts when Holm
rejects it *and* its effect size exceeds the threshold, so a huge window does not alert on a negligible
shift (the effect-size condition can only remove alerts, so the error rate stays at most ``alpha``).

Which data makes the reference matters as much as the tests. The data a team labels through active
learning is deliberately unrepresentative (the queue picks the examples the model is least sure of), so
a reference built from the labeled validation split alone makes ordinary traffic look drifted: more
confident, a different class mix. :func:`build_drift_reference` summarises any set of rows, and
:func:`combine_drift_references` pools several summaries, each standing for its share of a population:
the unlabeled pool scored by the version, plus the labeled data (its validation split, out-of-sample)
for the examples that left the pool to be labeled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist, jensenshannon
from scipy.stats import binomtest, chi2_contingency, ks_2samp

from training.query import confidence_scores

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = re.compile("\ufffd")
_NUL = re.compile("\x00")
# C0/C1 control characters other than NUL, tab, newline and carriage return.
_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MALFORMED_KINDS: dict[str, re.Pattern[str]] = {
    "lone_surrogate": _LONE_SURROGATE,
    "replacement_char": _REPLACEMENT,
    "nul": _NUL,
    "control_char": _CONTROL,
}


@dataclass
class DriftConfig:
    """Thresholds of :func:`drift_window`. The defaults suit windows of ~100-1000 samples.

    Attributes
    ----------
    alpha : float
        Family-wise false-alarm rate of one window: the ``m`` tests run are corrected together with
        Holm's step-down procedure (:func:`holm_bonferroni`).
    class_js_threshold : float
        Minimum Jensen-Shannon distance (base 2, in [0, 1]) between predicted class mixes.
    confidence_ks_threshold, length_ks_threshold : float
        Minimum KS statistics for the confidence and token-length distributions.
    truncation_rate_increase, unk_share_increase, malformed_share_increase : float
        Minimum absolute increases of the share of truncated texts, of texts with an unknown token,
        and of texts with malformed Unicode.
    novel_share_increase : float
        Minimum excess of the share of novel samples (farther from the reference than 95% of the
        reference itself, see :func:`sample_novelty`) over the 5% expected without drift.
    n_permutations : int
        Permutations of the MMD test (the smallest p-value it can give is ``1 / (n_permutations + 1)``,
        so keep it well above ``number_of_tests / alpha``).
    seed : int
        Seeds the permutations, so a window always gets the same answer.
    """

    alpha: float = 0.01
    class_js_threshold: float = 0.1
    confidence_ks_threshold: float = 0.1
    length_ks_threshold: float = 0.2
    truncation_rate_increase: float = 0.1
    unk_share_increase: float = 0.05
    malformed_share_increase: float = 0.02
    novel_share_increase: float = 0.05
    n_permutations: int = 2000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def malformed_text_counts(texts: Sequence[str]) -> dict[str, int]:
    """How many texts contain each kind of malformed Unicode, and how many contain any.

    Parameters
    ----------
    texts : sequence of str

    Returns
    -------
    dict
        ``{"lone_surrogate", "replacement_char", "nul", "control_char", "any"}`` -> number of texts.
    """
    counts = dict.fromkeys([*MALFORMED_KINDS, "any"], 0)
    for text in texts:
        hit = False
        for kind, pattern in MALFORMED_KINDS.items():
            if pattern.search(text):
                counts[kind] += 1
                hit = True
        counts["any"] += hit
    return counts


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _class_counts(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    k = probs.shape[1]
    if multi_label:
        return (probs >= 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(probs.argmax(axis=1), minlength=k).astype(np.int64)


#: Accepted names of the three token statistics: the plain-dict names, then ``training.encoder.TokenStats``'s.
_TOKEN_FIELDS: dict[str, tuple[str, str]] = {
    "token_count": ("token_count", "n_tokens"),
    "truncated": ("truncated", "truncated"),
    "unk_count": ("unk_count", "n_unknown"),
}


def _token_arrays(token_stats: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(token_count, truncated, unk_count)`` from a mapping or a ``training.encoder.TokenStats``."""
    found: dict[str, Any] = {}
    for key, names in _TOKEN_FIELDS.items():
        for name in names:
            value = (
                token_stats.get(name)
                if isinstance(token_stats, Mapping)
                else getattr(token_stats, name, None)
            )
            if value is not None:
                found[key] = value
                break
        else:
            raise ValueError(f"token_stats needs {key!r} (or {names[1]!r})")
    counts = np.asarray(found["token_count"], dtype=np.int64)
    truncated = np.asarray(found["truncated"], dtype=bool)
    unk = np.asarray(found["unk_count"], dtype=np.int64)
    if not counts.shape == truncated.shape == unk.shape:
        raise ValueError("token_stats arrays must have the same length")
    return counts, truncated, unk


def _token_summary(token_stats: Any) -> dict[str, Any]:
    counts, truncated, unk = _token_arrays(token_stats)
    n = int(counts.size)
    if n == 0:
        return {"n_texts": 0}
    return {
        "n_texts": n,
        "unk_token_rate": float(unk.sum() / max(1, counts.sum())),
        "texts_with_unk_share": float((unk > 0).mean()),
        "truncation_rate": float(truncated.mean()),
        "mean_length": float(counts.mean()),
        "length_quantiles": {str(q): float(np.quantile(counts, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
    }


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
        kk = min(_NOVELTY_NEIGHBOURS, d.shape[0] - 1)
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
        return cls(
            label_names=list(data["label_names"]),
            n=int(data["n"]),
            token_summary=dict(data["token_summary"]),
            malformed_counts={k: int(v) for k, v in data["malformed_counts"].items()},
            n_texts=int(data["n_texts"]),
            multi_label=bool(data["multi_label"]),
            description=dict(data.get("description") or {}),
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
        return cls(
            label_names=list(meta["label_names"]),
            n=int(meta["n"]),
            token_summary=dict(meta["token_summary"]),
            malformed_counts={k: int(v) for k, v in meta["malformed_counts"].items()},
            n_texts=int(meta["n_texts"]),
            multi_label=bool(meta["multi_label"]),
            description=dict(meta.get("description") or {}),
            **loaded,
        )


_NOVELTY_NEIGHBOURS = 5
_NOVELTY_QUANTILE = 0.95


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
        class_counts=_class_counts(p, multi_label),
        confidences=confidences.astype(np.float32),
        n=n,
        multi_label=multi_label,
        description=dict(description or {}),
    )
    if embeddings is not None:
        x = _l2_normalise(np.asarray(embeddings, dtype=np.float64))
        if x.shape[0] != n:
            raise ValueError(f"{x.shape[0]} embeddings for {n} probability rows")
        sample = rng.choice(n, size=min(n, max_embeddings), replace=False)
        reference.embedding_sample = x[sample].astype(np.float16)
    if token_stats is not None:
        reference.token_summary = _token_summary(token_stats)
        counts, _, _ = _token_arrays(token_stats)
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


def holm_bonferroni(p_values: Sequence[float] | np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of ``m`` p-values tested together.

    Sorted ascending, the j-th smallest p-value (j = 0, 1, ...) is compared with ``alpha / (m - j)``; every
    hypothesis up to the first p-value at or above its level is rejected, none after it. The chance of
    rejecting any true hypothesis (the family-wise error rate) is at most ``alpha`` whatever the
    dependence between the tests, and everything plain Bonferroni (``alpha / m`` for all) rejects, Holm
    rejects too.

    Parameters
    ----------
    p_values : sequence of float, length m
    alpha : float
        Family-wise error rate.

    Returns
    -------
    rejected : np.ndarray, shape (m,) bool
    levels : np.ndarray, shape (m,) float
        The level each p-value was compared with (``alpha / (m - rank)``).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    levels = np.empty(m)
    levels[order] = alpha / (m - np.arange(m))
    below = p[order] < levels[order]
    # Step down: stop at the first sorted p-value that is not below its level.
    passed = np.cumprod(below).astype(bool)
    rejected = np.zeros(m, dtype=bool)
    rejected[order] = passed
    return rejected, levels


def mmd_permutation_test(
    reference: np.ndarray, window: np.ndarray, *, bandwidth: float, n_permutations: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Maximum mean discrepancy (biased MMD², RBF kernel) with a permutation p-value.

    All permutations are evaluated at once as ``diag(V^T K V)`` for a matrix ``V`` of signed group
    weights, so 2,000 permutations of 500 + 200 points take well under a second.

    Parameters
    ----------
    reference : np.ndarray, shape (s, p)
    window : np.ndarray, shape (m, p)
    bandwidth : float
        RBF length scale ``sigma`` in ``exp(-|x - y|^2 / (2 sigma^2))``.
    n_permutations : int
    seed : int

    Returns
    -------
    (float, float)
        MMD² and its p-value ``(1 + #{permuted >= observed}) / (1 + n_permutations)``.
    """
    z = np.vstack([reference, window]).astype(np.float64)
    s, m = reference.shape[0], window.shape[0]
    if s < 2 or m < 2:
        return 0.0, 1.0
    kernel = np.exp(-cdist(z, z, "sqeuclidean") / (2.0 * bandwidth**2)).astype(np.float32)
    weights = np.concatenate([np.full(s, 1.0 / s), np.full(m, -1.0 / m)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    permuted = np.stack([rng.permutation(weights) for _ in range(n_permutations)], axis=1)
    columns = np.concatenate([weights[:, None], permuted], axis=1)
    stats = np.einsum("ij,ij->j", columns, kernel @ columns)
    observed = float(stats[0])
    p_value = float((1 + np.sum(stats[1:] >= observed - 1e-12)) / (1 + n_permutations))
    return max(observed, 0.0), p_value


def sample_novelty(reference: DriftReference, embeddings: np.ndarray) -> np.ndarray:
    """Per-sample novelty: how far each embedding lies from the reference sample, as a quantile.

    The mean distance to the 5 nearest reference points is compared with the same (leave-one-out)
    distance of the reference points themselves: 0.5 is typical, 0.99 is farther out than 99% of the
    reference. Combined with low confidence this routes production samples to the queue (reason ``drift``).

    Parameters
    ----------
    reference : DriftReference
        Built with embeddings.
    embeddings : np.ndarray, shape (m, d)

    Returns
    -------
    np.ndarray, shape (m,), in [0, 1]
    """
    if not reference.has_embeddings:
        raise ValueError("the reference holds no embeddings")
    d = cdist(_l2_normalise(np.asarray(embeddings, dtype=np.float64)), reference.sample)
    kk = min(_NOVELTY_NEIGHBOURS, d.shape[1] - 1)
    distance = np.sort(d, axis=1)[:, :kk].mean(axis=1)
    baseline = reference.knn_distances
    return np.searchsorted(baseline, distance, side="right") / baseline.size


@dataclass
class DriftResult:
    """Drift signals of one production window. JSON-able through :meth:`to_dict`.

    Attributes
    ----------
    n : int
        Samples in the window.
    class_distribution : dict of str to float
        Predicted class shares in the window.
    class_shift : dict
        ``js_distance``, ``p_value`` (chi-square), ``alert``.
    mean_confidence : float or None
    confidence_shift : dict
        ``ks_statistic``, ``p_value``, ``reference_mean_confidence``, ``alert``.
    embedding_drift : dict or None
        ``mmd2``, ``p_value`` (MMD permutation test), ``novel_share`` (share of samples whose
        :func:`sample_novelty` exceeds 0.95), ``novel_p_value``, ``alert`` (either test); None without
        embeddings.
    anomalies : dict
        Token and text statistics of the window next to the reference's, with per-signal ``alerts``.
    alert : bool
    reasons : list of str
        One readable sentence per alerting signal.
    alpha_per_test : float
        The strictest Holm level, ``alpha / m``: the one the smallest p-value was compared with.
    tests : list of dict
        Every test run, in signal order: ``name`` (``class_mix``, ``confidence``, ``embedding_mmd``,
        ``novel_samples``, ``truncation``, ``unknown_tokens``, ``length``, ``malformed_unicode``),
        ``p_value``, ``level`` (its Holm level), ``significant`` (rejected by Holm), ``effect`` (effect
        size above its threshold), ``alert`` (both).
    correction : str
        ``"holm"``.
    alpha : float
        The family-wise false-alarm rate the window was tested at.
    """

    n: int
    class_distribution: dict[str, float]
    class_shift: dict[str, Any]
    mean_confidence: float | None
    confidence_shift: dict[str, Any]
    embedding_drift: dict[str, Any] | None
    anomalies: dict[str, Any]
    alert: bool
    reasons: list[str]
    alpha_per_test: float
    tests: list[dict[str, Any]] = field(default_factory=list)
    correction: str = "holm"
    alpha: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Test:
    """One hypothesis test of a window: its p-value, whether the effect size is large enough to matter,
    and the sentence a person reads when it alerts."""

    name: str
    p_value: float
    effect: bool
    reason: str


def _format_p(p: float) -> str:
    return f"{p:.2g}"


def _share_test(count: int, n: int, reference_share: float, n_reference: int) -> float:
    """One-sided binomial p-value that the window's share exceeds the reference share."""
    if n == 0:
        return 1.0
    # A reference share of exactly 0 would make a single hit infinitely surprising; floor it at the
    # resolution the reference can offer.
    floor = 1.0 / (n_reference + 1) if n_reference else 0.01
    return float(
        binomtest(int(count), int(n), min(1.0, max(reference_share, floor)), alternative="greater").pvalue
    )


def _class_signal(
    reference: DriftReference, counts: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], _Test]:
    names = reference.label_names
    shares = counts / counts.sum() if counts.sum() else np.zeros(len(names))
    ref_shares = reference.class_shares
    table = np.vstack([reference.class_counts, counts])
    table = table[:, table.sum(axis=0) > 0]
    p_value = 1.0
    if counts.sum() and reference.class_counts.sum() and table.shape[1] >= 2:
        p_value = float(chi2_contingency(table, correction=False).pvalue)
    js = float(jensenshannon(ref_shares, shares, base=2)) if counts.sum() and ref_shares.sum() else 0.0
    js = js if np.isfinite(js) else 0.0
    moved = np.argsort(-np.abs(shares - ref_shares))[:2]
    change = ", ".join(f"{names[i]} {ref_shares[i]:.0%} -> {shares[i]:.0%}" for i in moved)
    reason = (
        f"predicted class mix shifted: {change} (JS distance {js:.2f} > {cfg.class_js_threshold}, "
        f"p={_format_p(p_value)})"
    )
    info = {"js_distance": js, "p_value": p_value, "alert": False}
    return info, _Test("class_mix", p_value, js > cfg.class_js_threshold, reason)


def _confidence_signal(
    reference: DriftReference, confidence: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], _Test]:
    ref_mean = float(reference.confidences.mean()) if reference.confidences.size else None
    statistic, p_value = 0.0, 1.0
    if confidence.size and reference.confidences.size:
        ks = ks_2samp(reference.confidences.astype(np.float64), confidence)
        statistic, p_value = float(ks.statistic), float(ks.pvalue)
    reason = ""
    if ref_mean is not None and confidence.size:
        mean = float(confidence.mean())
        direction = "dropped" if mean < ref_mean else "rose"
        reason = (
            f"model confidence {direction}: mean {ref_mean:.2f} -> {mean:.2f} "
            f"(KS {statistic:.2f} > {cfg.confidence_ks_threshold}, p={_format_p(p_value)})"
        )
    info = {
        "ks_statistic": statistic,
        "p_value": p_value,
        "reference_mean_confidence": ref_mean,
        "alert": False,
    }
    return info, _Test(
        "confidence", p_value, statistic > cfg.confidence_ks_threshold and bool(reason), reason
    )


def _embedding_signal(
    reference: DriftReference, embeddings: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], list[_Test]]:
    window = _l2_normalise(np.asarray(embeddings, dtype=np.float64))
    mmd2, p_value = mmd_permutation_test(
        reference.sample,
        window,
        bandwidth=reference.bandwidth,
        n_permutations=cfg.n_permutations,
        seed=cfg.seed,
    )
    # Novel samples: under no drift, a sample lies farther from its nearest reference neighbours than
    # 95% of the reference does with probability 0.05, so the count is Binomial(m, 0.05). A minority of
    # new content (an unseen topic in 10% of the traffic) shows up here long before the MMD moves.
    novel = sample_novelty(reference, embeddings) > _NOVELTY_QUANTILE
    novel_share = float(novel.mean())
    novel_p = float(
        binomtest(int(novel.sum()), novel.size, 1.0 - _NOVELTY_QUANTILE, alternative="greater").pvalue
    )
    tests = [
        _Test(
            "embedding_mmd",
            p_value,
            True,
            f"embeddings moved away from the reference data (MMD² {mmd2:.3f}, p={_format_p(p_value)})",
        ),
        _Test(
            "novel_samples",
            novel_p,
            novel_share - (1.0 - _NOVELTY_QUANTILE) > cfg.novel_share_increase,
            f"unfamiliar content: {novel_share:.0%} of samples lie farther from the reference data than 95% of "
            f"the reference itself (expected 5%, p={_format_p(novel_p)})",
        ),
    ]
    info = {
        "mmd2": mmd2,
        "p_value": p_value,
        "novel_share": novel_share,
        "novel_p_value": novel_p,
        "alert": False,
    }
    return info, tests


def _token_signals(
    reference: DriftReference, token_stats: Any, cfg: DriftConfig
) -> tuple[dict[str, Any], list[_Test]]:
    counts, truncated, unk = _token_arrays(token_stats)
    window = _token_summary(token_stats)
    ref = reference.token_summary
    n, n_ref = int(counts.size), int(ref["n_texts"])
    info: dict[str, Any] = {}
    for key in ("unk_token_rate", "texts_with_unk_share", "truncation_rate", "mean_length"):
        info[key] = window.get(key)
        info[f"reference_{key}"] = ref[key]
    tests: list[_Test] = []
    if n == 0:
        return info, tests

    truncation = float(truncated.mean())
    p_value = _share_test(int(truncated.sum()), n, ref["truncation_rate"], n_ref)
    tests.append(
        _Test(
            "truncation",
            p_value,
            truncation - ref["truncation_rate"] > cfg.truncation_rate_increase,
            f"more texts truncated: {ref['truncation_rate']:.0%} -> {truncation:.0%} (p={_format_p(p_value)})",
        )
    )

    unk_share = float((unk > 0).mean())
    p_value = _share_test(int((unk > 0).sum()), n, ref["texts_with_unk_share"], n_ref)
    tests.append(
        _Test(
            "unknown_tokens",
            p_value,
            unk_share - ref["texts_with_unk_share"] > cfg.unk_share_increase,
            f"more texts with unknown tokens: {ref['texts_with_unk_share']:.0%} -> {unk_share:.0%} "
            f"(unknown-token rate {ref['unk_token_rate']:.2%} -> {window['unk_token_rate']:.2%}, "
            f"p={_format_p(p_value)})",
        )
    )

    if reference.token_counts.size:
        length = ks_2samp(reference.token_counts.astype(np.float64), counts.astype(np.float64))
        info["length_ks_statistic"] = float(length.statistic)
        info["length_p_value"] = float(length.pvalue)
        tests.append(
            _Test(
                "length",
                float(length.pvalue),
                float(length.statistic) > cfg.length_ks_threshold,
                f"text length changed: mean {ref['mean_length']:.0f} -> {window['mean_length']:.0f} tokens "
                f"(KS {length.statistic:.2f} > {cfg.length_ks_threshold}, p={_format_p(float(length.pvalue))})",
            )
        )
    return info, tests


def _malformed_signal(
    reference: DriftReference, texts: Sequence[str], cfg: DriftConfig
) -> tuple[dict[str, Any], list[_Test]]:
    malformed = malformed_text_counts(texts)
    n = len(texts)
    share = malformed["any"] / n if n else 0.0
    ref_share = reference.malformed_counts.get("any", 0) / reference.n_texts
    info = {"malformed": malformed, "malformed_share": share, "reference_malformed_share": ref_share}
    if not n:
        return info, []
    p_value = _share_test(malformed["any"], n, ref_share, reference.n_texts)
    kinds = ", ".join(f"{kind.replace('_', ' ')} {c}" for kind, c in malformed.items() if kind != "any" and c)
    reason = (
        f"malformed text: {share:.0%} of texts (reference {ref_share:.0%}): {kinds} (p={_format_p(p_value)})"
    )
    return info, [
        _Test("malformed_unicode", p_value, share - ref_share > cfg.malformed_share_increase, reason)
    ]


_ANOMALY_TESTS = ("truncation", "unknown_tokens", "length", "malformed_unicode")


def drift_window(
    reference: DriftReference,
    *,
    probs: np.ndarray,
    embeddings: np.ndarray | None = None,
    token_stats: Any = None,
    texts: Sequence[str] | None = None,
    config: DriftConfig | None = None,
) -> DriftResult:
    """Compare one window of production samples with the reference.

    Every test that can run (see the module docstring) gives a p-value; the p-values are corrected
    together with :func:`holm_bonferroni` at ``config.alpha``, and a test alerts when Holm rejects it and
    its effect size exceeds the configured threshold.

    Parameters
    ----------
    reference : DriftReference
    probs : np.ndarray, shape (m, k)
        The model's probabilities for the window's samples.
    embeddings : np.ndarray, shape (m, d), optional
        Skipped when ``None`` or when the reference has no embeddings.
    token_stats : mapping or ``training.encoder.TokenStats``, optional
        ``token_count``, ``truncated``, ``unk_count`` arrays of shape (m,) (as in :func:`build_drift_reference`);
        skipped when ``None`` or when the reference has no token statistics.
    texts : sequence of str, optional
        For the malformed-Unicode share.
    config : DriftConfig, optional

    Returns
    -------
    DriftResult
    """
    cfg = config or DriftConfig()
    p = np.asarray(probs, dtype=np.float64)
    k = len(reference.label_names)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"probs must have shape (m, {k}), got {p.shape}")
    m = p.shape[0]
    if embeddings is not None and np.asarray(embeddings).shape[0] != m:
        raise ValueError(f"{np.asarray(embeddings).shape[0]} embeddings for {m} probability rows")

    use_embeddings = embeddings is not None and reference.has_embeddings and m >= 2
    use_tokens = token_stats is not None and reference.token_summary.get("n_texts", 0) > 0
    use_texts = texts is not None and reference.n_texts > 0

    counts = _class_counts(p, reference.multi_label)
    class_shift, class_test = _class_signal(reference, counts, cfg)
    confidence = confidence_scores(p, multi_label=reference.multi_label)
    confidence_shift, confidence_test = _confidence_signal(reference, confidence, cfg)
    tests = [class_test, confidence_test]
    embedding_drift: dict[str, Any] | None = None
    if use_embeddings:
        embedding_drift, more = _embedding_signal(reference, np.asarray(embeddings), cfg)
        tests += more
    anomalies: dict[str, Any] = {"alerts": []}
    if use_tokens:
        info, more = _token_signals(reference, token_stats, cfg)
        anomalies.update(info)
        tests += more
    if use_texts:
        assert texts is not None
        info, more = _malformed_signal(reference, texts, cfg)
        anomalies.update(info)
        tests += more

    significant, levels = holm_bonferroni([t.p_value for t in tests], cfg.alpha)
    alerting = {t.name for t, s in zip(tests, significant, strict=True) if s and t.effect}
    class_shift["alert"] = "class_mix" in alerting
    confidence_shift["alert"] = "confidence" in alerting
    if embedding_drift is not None:
        embedding_drift["alert"] = bool(alerting & {"embedding_mmd", "novel_samples"})
    anomalies["alerts"] = [name for name in _ANOMALY_TESTS if name in alerting]
    reasons = [t.reason for t in tests if t.name in alerting]

    total = counts.sum()
    return DriftResult(
        n=m,
        class_distribution={
            name: float(counts[i] / total) if total else 0.0 for i, name in enumerate(reference.label_names)
        },
        class_shift=class_shift,
        mean_confidence=float(confidence.mean()) if m else None,
        confidence_shift=confidence_shift,
        embedding_drift=embedding_drift,
        anomalies=anomalies,
        alert=bool(reasons),
        reasons=reasons,
        alpha_per_test=cfg.alpha / len(tests),
        tests=[
            {
                "name": t.name,
                "p_value": t.p_value,
                "level": float(level),
                "significant": bool(s),
                "effect": bool(t.effect),
                "alert": t.name in alerting,
            }
            for t, s, level in zip(tests, significant, levels, strict=True)
        ],
        correction="holm",
        alpha=cfg.alpha,
    )
