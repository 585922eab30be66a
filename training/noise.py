"""Label-noise reports from out-of-sample probabilities (cleanlab's confident learning).

Inputs are the given labels and out-of-sample probabilities (see :mod:`training.cv` and :mod:`training.noise_views`); outputs are plain
dataclasses with ``to_dict()``. Everything heavy is cleanlab's:

- label quality per example: :func:`cleanlab.rank.get_label_quality_scores` (0..1, low = suspect);
- issue flags: :func:`cleanlab.filter.find_label_issues` (confident-learning pruning);
- noise rates: the calibrated confident joint, :func:`cleanlab.count.estimate_joint`.

Small-data behaviour (no crash, documented instead):

- no rows: an empty report with noise rate 0.0;
- a class nobody was given: its per-class rate is ``None`` (``n = 0``);
- a class given to a single example: cleanlab keeps at least one example per class unflagged
  (``min_examples_per_class=1``), so that example is ranked by quality but never flagged;
- a single class among the given labels: the confident joint has one row, so the estimated noise rate
  is what the probabilities say about that class alone; flags follow cleanlab as usual;
- cleanlab's warnings about such cases are recorded in the report's ``notes`` instead of printed.

Several annotators per item (agreement, CROWDLAB, ActiveLab) are in :mod:`training.multiannotator`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cleanlab.count import estimate_joint, num_label_issues
from cleanlab.filter import find_label_issues
from cleanlab.multilabel_classification import filter as multilabel_filter
from cleanlab.multilabel_classification import rank as multilabel_rank
from cleanlab.rank import get_label_quality_scores


def ratio_or_none(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is 0 (nothing to count)."""
    return float(numerator / denominator) if denominator > 0 else None


@dataclass
class NoiseReport:
    """Label-noise findings for a single-label data set.

    Attributes
    ----------
    label_names : list of str, length k
    given_label : np.ndarray, shape (n,) int
    suggested_label : np.ndarray, shape (n,) int
        The argmax of the out-of-sample probabilities.
    label_quality : np.ndarray, shape (n,) float in [0, 1]
        Low means the given label is likely wrong.
    is_issue : np.ndarray, shape (n,) bool
    issue_ranking : np.ndarray, shape (n_issues,) int
        Indices of flagged examples, lowest label quality first (ties by index).
    estimated_noise_rate : float
        Estimated share of examples whose given label differs from the true one (1 - trace of the joint).
    per_class : list of dict
        ``label``, ``n`` (examples given that label) and ``estimated_noise_rate``: the share of examples
        given that label whose true label is another (``None`` when ``n == 0``).
    joint : list of list of float, k x k
        Estimated ``P(given = i, true = j)``.
    method : str
        How issues were flagged (cleanlab's ``filter_by``) and scored (``quality_method``).
    notes : list of str
        Warnings cleanlab raised on this data (tiny classes, absent classes).
    """

    label_names: list[str]
    given_label: np.ndarray
    suggested_label: np.ndarray
    label_quality: np.ndarray
    is_issue: np.ndarray
    issue_ranking: np.ndarray
    estimated_noise_rate: float
    per_class: list[dict[str, Any]]
    joint: list[list[float]]
    method: str
    notes: list[str] = field(default_factory=list)

    @property
    def n_issues(self) -> int:
        return int(self.is_issue.sum())

    def issues(self) -> list[dict[str, Any]]:
        """Flagged examples, worst first: ``index``, ``given_label``, ``suggested_label``, ``label_quality``."""
        return [
            {
                "index": int(i),
                "given_label": self.label_names[int(self.given_label[i])],
                "suggested_label": self.label_names[int(self.suggested_label[i])],
                "label_quality": float(self.label_quality[i]),
            }
            for i in self.issue_ranking
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_names": list(self.label_names),
            "given_label": self.given_label.tolist(),
            "suggested_label": self.suggested_label.tolist(),
            "label_quality": self.label_quality.tolist(),
            "is_issue": self.is_issue.tolist(),
            "issue_ranking": self.issue_ranking.tolist(),
            "estimated_noise_rate": self.estimated_noise_rate,
            "per_class": self.per_class,
            "joint": self.joint,
            "method": self.method,
            "notes": list(self.notes),
            "n_issues": self.n_issues,
        }


def _rank_ascending(quality: np.ndarray, mask: np.ndarray) -> np.ndarray:
    indices = np.flatnonzero(mask)
    return indices[np.lexsort((indices, quality[indices]))]


def _record(caught: list[warnings.WarningMessage]) -> list[str]:
    return sorted({str(w.message).strip() for w in caught})


def find_noise(
    labels: np.ndarray,
    oos_probs: np.ndarray,
    label_names: Sequence[str],
    *,
    filter_by: str = "prune_by_noise_rate",
    quality_method: str = "self_confidence",
) -> NoiseReport:
    """Find likely label errors among single-label examples.

    Parameters
    ----------
    labels : np.ndarray, shape (n,) int in [0, k)
        The given (possibly wrong) labels.
    oos_probs : np.ndarray, shape (n, k)
        Out-of-sample predicted probabilities (rows sum to 1), e.g. from :func:`training.cv_logistic.oos_probs_frozen`.
    label_names : sequence of str, length k
    filter_by : str
        cleanlab's flagging rule (``"prune_by_noise_rate"``, ``"prune_by_class"``, ``"both"``,
        ``"confident_learning"``, ``"predicted_neq_given"``, ...).
    quality_method : str
        cleanlab's label-quality score: ``"self_confidence"``, ``"normalized_margin"`` or
        ``"confidence_weighted_entropy"``.

    Returns
    -------
    NoiseReport
    """
    names = list(label_names)
    k = len(names)
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(oos_probs, dtype=np.float64)
    if p.shape != (y.shape[0], k):
        raise ValueError(f"oos_probs must have shape ({y.shape[0]}, {k}), got {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k})")
    n = y.shape[0]
    method = f"filter_by={filter_by}, quality={quality_method}"
    counts = np.bincount(y, minlength=k)
    if n == 0:
        return NoiseReport(
            names,
            y,
            y.copy(),
            np.zeros(0),
            np.zeros(0, dtype=bool),
            np.zeros(0, dtype=np.int64),
            0.0,
            [{"label": name, "estimated_noise_rate": None, "n": 0} for name in names],
            np.zeros((k, k)).tolist(),
            method,
            ["no labeled examples"],
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quality = get_label_quality_scores(y, p, method=quality_method)
        is_issue = find_label_issues(y, p, filter_by=filter_by, n_jobs=1)
        joint = estimate_joint(y, p)
    per_class = [
        {
            "label": names[i],
            "estimated_noise_rate": ratio_or_none(joint[i].sum() - joint[i, i], joint[i].sum())
            if counts[i]
            else None,
            "n": int(counts[i]),
        }
        for i in range(k)
    ]
    return NoiseReport(
        label_names=names,
        given_label=y,
        suggested_label=p.argmax(axis=1),
        label_quality=np.asarray(quality, dtype=np.float64),
        is_issue=np.asarray(is_issue, dtype=bool),
        issue_ranking=_rank_ascending(np.asarray(quality), np.asarray(is_issue, dtype=bool)),
        estimated_noise_rate=float(np.clip(1.0 - np.trace(joint), 0.0, 1.0)),
        per_class=per_class,
        joint=joint.tolist(),
        method=method,
        notes=_record(caught),
    )


@dataclass
class MultiLabelNoiseReport:
    """Label-noise findings for a multi-label data set.

    Attributes
    ----------
    label_names : list of str, length k
    given_labels : list of list of int
    suggested_labels : list of list of int
        Classes whose out-of-sample probability is at least the threshold.
    label_quality : np.ndarray, shape (n,) float in [0, 1]
    is_issue : np.ndarray, shape (n,) bool
        True when any class of the example looks wrongly annotated.
    issue_ranking : np.ndarray, shape (n_issues,) int
    estimated_noise_rate : float
        Estimated share of examples with at least one wrong class (cleanlab's ``num_label_issues`` / n).
    per_class : list of dict
        ``label``, ``n`` (examples given that class) and ``estimated_noise_rate`` (share of those that do not
        truly have it, from the one-vs-rest joint; ``None`` when ``n == 0``), plus
        ``estimated_missing_rate`` (share of examples without the class that truly have it).
    notes : list of str
    """

    label_names: list[str]
    given_labels: list[list[int]]
    suggested_labels: list[list[int]]
    label_quality: np.ndarray
    is_issue: np.ndarray
    issue_ranking: np.ndarray
    estimated_noise_rate: float
    per_class: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_names": list(self.label_names),
            "given_labels": self.given_labels,
            "suggested_labels": self.suggested_labels,
            "label_quality": self.label_quality.tolist(),
            "is_issue": self.is_issue.tolist(),
            "issue_ranking": self.issue_ranking.tolist(),
            "estimated_noise_rate": self.estimated_noise_rate,
            "per_class": self.per_class,
            "notes": list(self.notes),
            "n_issues": int(self.is_issue.sum()),
        }


def find_noise_multilabel(
    labels: Sequence[Sequence[int]],
    probs: np.ndarray,
    label_names: Sequence[str],
    *,
    threshold: float = 0.5,
) -> MultiLabelNoiseReport:
    """Find likely annotation errors among multi-label examples.

    Parameters
    ----------
    labels : sequence of sequences of int
        The given classes of each example (an empty list is allowed).
    probs : np.ndarray, shape (n, k)
        Out-of-sample per-class probabilities (independent; rows need not sum to 1).
    label_names : sequence of str, length k
    threshold : float
        Probability at which a class is suggested.

    Returns
    -------
    MultiLabelNoiseReport
    """
    names = list(label_names)
    k = len(names)
    given = [sorted({int(c) for c in row}) for row in labels]
    p = np.asarray(probs, dtype=np.float64)
    n = len(given)
    if p.shape != (n, k):
        raise ValueError(f"probs must have shape ({n}, {k}), got {p.shape}")
    if any(c < 0 or c >= k for row in given for c in row):
        raise ValueError(f"labels must lie in [0, {k})")
    suggested = [[int(c) for c in np.flatnonzero(row >= threshold)] for row in p]
    onehot = np.zeros((n, k), dtype=bool)
    for i, row in enumerate(given):
        onehot[i, row] = True
    counts = onehot.sum(axis=0)
    if n == 0:
        return MultiLabelNoiseReport(
            names,
            given,
            suggested,
            np.zeros(0),
            np.zeros(0, dtype=bool),
            np.zeros(0, dtype=np.int64),
            0.0,
            [
                {"label": name, "estimated_noise_rate": None, "estimated_missing_rate": None, "n": 0}
                for name in names
            ],
            ["no labeled examples"],
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quality = np.asarray(multilabel_rank.get_label_quality_scores(given, p), dtype=np.float64)
        is_issue = np.asarray(multilabel_filter.find_label_issues(given, p, n_jobs=1), dtype=bool)
        joint = estimate_joint(given, p, multi_label=True)  # (k, 2, 2): [class, given, true]
        n_issues = int(num_label_issues(given, p, multi_label=True))
    per_class = [
        {
            "label": names[c],
            "estimated_noise_rate": ratio_or_none(joint[c, 1, 0], joint[c, 1].sum()) if counts[c] else None,
            "estimated_missing_rate": ratio_or_none(joint[c, 0, 1], joint[c, 0].sum()) if counts[c] < n else None,
            "n": int(counts[c]),
        }
        for c in range(k)
    ]
    return MultiLabelNoiseReport(
        label_names=names,
        given_labels=given,
        suggested_labels=suggested,
        label_quality=quality,
        is_issue=is_issue,
        issue_ranking=_rank_ascending(quality, is_issue),
        estimated_noise_rate=float(min(1.0, n_issues / n)),
        per_class=per_class,
        notes=_record(caught),
    )

