"""Several annotators per item: how often answers agree, CROWDLAB consensus and annotator quality, and
ActiveLab's scores for what to label next (a first label or another one). Everything heavy is cleanlab's:

- several annotators per item: :func:`cleanlab.multiannotator.get_label_quality_multiannotator`;
- what to label next, a first label or another one: :func:`cleanlab.multiannotator.get_active_learning_scores`
  (ActiveLab).

Single-annotator label noise is in :mod:`training.noise`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from cleanlab.multiannotator import get_active_learning_scores, get_label_quality_multiannotator
from cleanlab.rank import get_label_quality_scores

from training.noise import ratio_or_none


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
        with_reference = [ratio_or_none(matches[:, j].sum(), comparable[:, j].sum()) for j in range(raw.shape[1])]
    return {
        "agreement_rate": ratio_or_none(agree, total),
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

