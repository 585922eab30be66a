"""Label-noise reports from out-of-sample probabilities (cleanlab's confident learning and CROWDLAB).

Inputs are the given labels and out-of-sample probabilities (see :mod:`training.cv`); outputs are plain
dataclasses with ``to_dict()``. Everything heavy is cleanlab's:

- label quality per example: :func:`cleanlab.rank.get_label_quality_scores` (0..1, low = suspect);
- issue flags: :func:`cleanlab.filter.find_label_issues` (confident-learning pruning);
- noise rates: the calibrated confident joint, :func:`cleanlab.count.estimate_joint`;
- several annotators per item: :func:`cleanlab.multiannotator.get_label_quality_multiannotator`;
- what to label next, a first label or another one: :func:`cleanlab.multiannotator.get_active_learning_scores`
  (ActiveLab).

Small-data behaviour (no crash, documented instead):

- no rows: an empty report with noise rate 0.0;
- a class nobody was given: its per-class rate is ``None`` (``n = 0``);
- a class given to a single example: cleanlab keeps at least one example per class unflagged
  (``min_examples_per_class=1``), so that example is ranked by quality but never flagged;
- a single class among the given labels: the confident joint has one row, so the estimated noise rate
  is what the probabilities say about that class alone; flags follow cleanlab as usual;
- cleanlab's warnings about such cases are recorded in the report's ``notes`` instead of printed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cleanlab.count import estimate_joint, num_label_issues
from cleanlab.filter import find_label_issues
from cleanlab.multiannotator import get_active_learning_scores, get_label_quality_multiannotator
from cleanlab.multilabel_classification import filter as multilabel_filter
from cleanlab.multilabel_classification import rank as multilabel_rank
from cleanlab.rank import get_label_quality_scores


def _rate(numerator: float, denominator: float) -> float | None:
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
            "estimated_noise_rate": _rate(joint[i].sum() - joint[i, i], joint[i].sum())
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
            "estimated_noise_rate": _rate(joint[c, 1, 0], joint[c, 1].sum()) if counts[c] else None,
            "estimated_missing_rate": _rate(joint[c, 0, 1], joint[c, 0].sum()) if counts[c] < n else None,
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


def _pairwise_agreement(labels: np.ndarray) -> float | None:
    """Share of agreeing pairs among all pairs of annotations on the same item (NaN = missing)."""
    return answer_agreement(labels)["agreement_rate"]


def answer_agreement(
    labels_multiannotator: np.ndarray, reference_labels: np.ndarray | None = None
) -> dict[str, Any]:
    """How often answers agree: pairs of answers on the same item, and each annotator with a reference.

    Answers are compared for equality only, so any non-negative integer coding works (a multi-label
    project can code each distinct set of labels as one integer).

    Parameters
    ----------
    labels_multiannotator : np.ndarray, shape (n_items, n_annotators), float
        Code of each annotator's answer on each item, ``NaN`` where that annotator did not answer it.
    reference_labels : np.ndarray, shape (n_items,), float, optional
        The label each answer is compared with (e.g. the consensus), ``NaN`` where there is none.

    Returns
    -------
    dict
        - ``agreement_rate``: share of agreeing pairs among all pairs of answers on the same item (None
          when no item has two answers);
        - ``n_pairs``: how many such pairs;
        - ``answered``: list of int, per annotator, items they answered;
        - ``agreement_with_reference``: list of float or None, per annotator, share of their answers equal
          to the reference, over items that have one (None for an annotator with no such item, and for
          everyone without ``reference_labels``).
    """
    raw = np.asarray(labels_multiannotator, dtype=np.float64)
    if raw.ndim != 2:
        raise ValueError("labels_multiannotator must be (n_items, n_annotators)")
    present = ~np.isnan(raw)
    if present.any() and (raw[present].min() < 0 or (raw[present] != np.round(raw[present])).any()):
        raise ValueError("answers must be coded as non-negative integers")
    agree = total = 0
    for row in raw:
        values = row[~np.isnan(row)].astype(np.int64)
        m = values.size
        if m < 2:
            continue
        same = np.bincount(values)
        agree += int((same * (same - 1)).sum() // 2)
        total += m * (m - 1) // 2
    with_reference: list[float | None] = [None] * raw.shape[1]
    if reference_labels is not None:
        reference = np.asarray(reference_labels, dtype=np.float64).reshape(-1)
        if reference.shape[0] != raw.shape[0]:
            raise ValueError("one reference label per item")
        comparable = present & ~np.isnan(reference)[:, None]
        matches = comparable & (raw == reference[:, None])
        with_reference = [_rate(matches[:, j].sum(), comparable[:, j].sum()) for j in range(raw.shape[1])]
    return {
        "agreement_rate": _rate(agree, total),
        "n_pairs": int(total),
        "answered": [int(v) for v in present.sum(axis=0)],
        "agreement_with_reference": with_reference,
    }


def annotator_agreement(
    labels_multiannotator: np.ndarray,
    consensus_probs: np.ndarray,
    *,
    annotator_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Consensus labels and annotator quality from several annotators (CROWDLAB).

    Parameters
    ----------
    labels_multiannotator : np.ndarray, shape (n_items, n_annotators), float
        Class index given by each annotator to each item, ``NaN`` where that annotator did not label it.
    consensus_probs : np.ndarray, shape (n_items, k)
        Model probabilities for the items (out-of-sample for the best estimates).
    annotator_ids : sequence of str, optional
        Names of the annotator columns; ``"0"``, ``"1"``, ... by default.

    Returns
    -------
    dict
        - ``consensus_label``: list of int or None per item (None for an item nobody labeled);
        - ``consensus_quality``: list of float or None per item (0..1, low = unsure consensus);
        - ``item_agreement``: share of the item's annotators that agree with the consensus;
        - ``num_annotations``: list of int per item;
        - ``annotator_quality``: ``{id: float or None}`` (None for an annotator with no labels);
        - ``annotator_agreement_with_consensus``: ``{id: float or None}``;
        - ``agreement_rate``: share of agreeing pairs over all pairs of annotations on the same item
          (None when no item has two annotations);
        - ``method``: ``"crowdlab"``, or ``"single_annotation"`` when no item has two annotations (or there
          is one annotator): then the consensus is the one label, its quality cleanlab's label-quality
          score against the model, and an annotator's quality the mean quality of their labels.
    """
    raw = np.asarray(labels_multiannotator, dtype=np.float64)
    p = np.asarray(consensus_probs, dtype=np.float64)
    if raw.ndim != 2 or p.ndim != 2 or p.shape[0] != raw.shape[0]:
        raise ValueError(
            "labels_multiannotator must be (n_items, n_annotators) and consensus_probs (n_items, k)"
        )
    n_items, n_annotators = raw.shape
    ids = (
        [str(a) for a in annotator_ids]
        if annotator_ids is not None
        else [str(a) for a in range(n_annotators)]
    )
    if len(ids) != n_annotators:
        raise ValueError("one annotator id per column")
    present = ~np.isnan(raw)
    num_annotations = present.sum(axis=1)
    rows = np.flatnonzero(num_annotations > 0)
    cols = np.flatnonzero(present.any(axis=0))
    labels = raw[np.ix_(rows, cols)]
    probs = p[rows]

    consensus_label: list[int | None] = [None] * n_items
    consensus_quality: list[float | None] = [None] * n_items
    item_agreement: list[float | None] = [None] * n_items
    annotator_quality: dict[str, float | None] = dict.fromkeys(ids)
    agreement_with_consensus: dict[str, float | None] = dict.fromkeys(ids)
    multi = rows.size > 0 and cols.size > 1 and bool((num_annotations[rows] > 1).any())
    if multi:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = get_label_quality_multiannotator(labels, probs, verbose=False)
        quality_frame = result["label_quality"]
        stats = result["annotator_stats"]
        for j, i in enumerate(rows):
            consensus_label[i] = int(quality_frame["consensus_label"].iloc[j])
            consensus_quality[i] = float(quality_frame["consensus_quality_score"].iloc[j])
            item_agreement[i] = float(quality_frame["annotator_agreement"].iloc[j])
        # annotator_stats is indexed by column position within `labels`, sorted by quality.
        for position, col in enumerate(cols):
            annotator_quality[ids[col]] = float(stats.loc[position, "annotator_quality"])
            agreement_with_consensus[ids[col]] = float(stats.loc[position, "agreement_with_consensus"])
        method = "crowdlab"
    else:
        if rows.size:
            # One annotation per item: take it (the first non-missing one if several columns hold it).
            first = np.array([row[~np.isnan(row)][0] for row in labels], dtype=np.int64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quality = get_label_quality_scores(first, probs)
            for j, i in enumerate(rows):
                consensus_label[i] = int(first[j])
                consensus_quality[i] = float(quality[j])
                item_agreement[i] = 1.0
            for col_position, col in enumerate(cols):
                mine = ~np.isnan(labels[:, col_position])
                annotator_quality[ids[col]] = float(quality[mine].mean())
                agreement_with_consensus[ids[col]] = 1.0
        method = "single_annotation"
    return {
        "consensus_label": consensus_label,
        "consensus_quality": consensus_quality,
        "item_agreement": item_agreement,
        "num_annotations": [int(v) for v in num_annotations],
        "annotator_quality": annotator_quality,
        "annotator_agreement_with_consensus": agreement_with_consensus,
        "agreement_rate": _pairwise_agreement(raw),
        "method": method,
    }


def _probability_rows(probs: np.ndarray | None, k: int | None, name: str) -> np.ndarray:
    """``probs`` as float rows that sum to 1 (stored probabilities are rounded); shape (0, k) when None."""
    if probs is None:
        return np.zeros((0, k or 0))
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, k), got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    totals = p.sum(axis=1, keepdims=True)
    return np.divide(p, totals, out=np.full_like(p, 1.0 / max(p.shape[1], 1)), where=totals > 0)


def activelab_scores(
    labels_multiannotator: np.ndarray | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabeled: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab: how much another label is worth for labeled items and a first one for unlabeled items.

    A thin wrapper of :func:`cleanlab.multiannotator.get_active_learning_scores`. Both outputs are on one
    scale in [0, 1]: **lower means more worth a label** (the true label is least certain given the answers so
    far and the model). A labeled item scores low when its annotators disagree, when the annotators who
    answered it are unreliable, or when the model doubts their consensus; an unlabeled item scores low when
    the model is unsure (its score is the model's confidence pulled towards 1/k by the annotators' weight).

    Parameters
    ----------
    labels_multiannotator : np.ndarray, shape (n_labeled, n_annotators), float, or None
        Class index each annotator gave each labeled item, ``NaN`` where that annotator did not answer it.
        Every row needs at least one label; columns nobody used are ignored. ``None`` or zero rows: no
        labeled items.
    pred_probs : np.ndarray, shape (n_labeled, k), or None
        Out-of-sample model probabilities of the labeled items (rows are renormalized to sum to 1).
    pred_probs_unlabeled : np.ndarray, shape (n_unlabeled, k), or None
        Model probabilities of the unlabeled items. ``None`` or zero rows: no unlabeled items.

    Returns
    -------
    labeled_scores : np.ndarray, shape (n_labeled,), float in [0, 1]
    unlabeled_scores : np.ndarray, shape (n_unlabeled,), float in [0, 1]

    Notes
    -----
    When every labeled item has exactly one answer, cleanlab weighs annotators and model equally (no
    temperature scaling); with several answers on some items, it fits a temperature and weighs each
    annotator by their CROWDLAB quality. With no labeled items the unlabeled scores are
    ``(max probability + 1/k) / 2``, which orders them by least confidence.
    """
    k_hint = next((np.asarray(p).shape[-1] for p in (pred_probs, pred_probs_unlabeled) if p is not None), None)
    labeled_probs = _probability_rows(pred_probs, k_hint, "pred_probs")
    unlabeled_probs = _probability_rows(pred_probs_unlabeled, k_hint, "pred_probs_unlabeled")
    if labeled_probs.shape[0] and unlabeled_probs.shape[0] and labeled_probs.shape[1] != unlabeled_probs.shape[1]:
        raise ValueError("pred_probs and pred_probs_unlabeled must have the same number of classes")
    n_labeled = labeled_probs.shape[0]
    if labels_multiannotator is None:
        raw = np.zeros((0, 0))
    else:
        raw = np.asarray(labels_multiannotator, dtype=np.float64)
        if raw.ndim != 2:
            raise ValueError("labels_multiannotator must be a 2-D array (n_labeled, n_annotators)")
    if raw.shape[0] != n_labeled:
        raise ValueError(f"labels_multiannotator has {raw.shape[0]} rows but pred_probs has {n_labeled}")
    if n_labeled == 0 and unlabeled_probs.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    labels = raw[:, ~np.isnan(raw).all(axis=0)] if n_labeled else raw
    if n_labeled and np.isnan(labels).all(axis=1).any():
        raise ValueError("every labeled item needs at least one label; pass unanswered items as unlabeled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labeled_scores, unlabeled_scores = get_active_learning_scores(
            labels if n_labeled else None,
            labeled_probs if n_labeled else None,
            unlabeled_probs if unlabeled_probs.shape[0] else None,
        )
    return (
        np.clip(np.asarray(labeled_scores, dtype=np.float64).reshape(-1), 0.0, 1.0),
        np.clip(np.asarray(unlabeled_scores, dtype=np.float64).reshape(-1), 0.0, 1.0),
    )
