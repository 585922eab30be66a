"""Evaluation metrics for single- and multi-label text classifiers, overall and per slice.

Everything is computed with :mod:`sklearn.metrics` with ``zero_division=0``. Results are plain dicts
of floats, ints, strings and lists, so they can be stored as JSON with a model version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from training.calibration import expected_calibration_error


def _present_classes(*arrays: np.ndarray) -> list[int]:
    present = np.unique(np.concatenate([np.asarray(a).ravel() for a in arrays]))
    return [int(c) for c in present]


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> list[dict[str, Any]]:
    k = len(label_names)
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return [
        {
            "label": label_names[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    ]


def _evaluate_single(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str], probs: np.ndarray | None
) -> dict[str, Any]:
    k = len(label_names)
    n = int(y_true.shape[0])
    result: dict[str, Any] = {"n": n}
    if n == 0:
        result.update(
            macro_f1=None, accuracy=None, per_class=_empty_per_class(label_names), confusion_matrix=None
        )
        return result
    if y_true.min() < 0 or y_true.max() >= k or y_pred.min() < 0 or y_pred.max() >= k:
        raise ValueError(f"labels must be integers in [0, {k})")
    # Macro-F1 averages over the classes that occur in y_true or y_pred (sklearn's default), so a slice
    # holding two classes is not dragged to zero by the classes it cannot contain.
    result["macro_f1"] = float(
        f1_score(y_true, y_pred, labels=_present_classes(y_true, y_pred), average="macro", zero_division=0)
    )
    result["accuracy"] = float(accuracy_score(y_true, y_pred))
    result["per_class"] = _per_class(y_true, y_pred, label_names)
    # Rows are true labels, columns predicted labels, always k x k in label_names order.
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=list(range(k))).tolist()
    if probs is not None:
        result["ece"] = expected_calibration_error(probs, y_true)
    return result


def _evaluate_multi(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str], probs: np.ndarray | None
) -> dict[str, Any]:
    n = int(y_true.shape[0])
    result: dict[str, Any] = {"n": n}
    if n == 0:
        result.update(
            macro_f1=None,
            micro_f1=None,
            subset_accuracy=None,
            hamming_loss=None,
            per_class=_empty_per_class(label_names),
        )
        return result
    present = [int(c) for c in np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))]
    result["macro_f1"] = (
        float(f1_score(y_true[:, present], y_pred[:, present], average="macro", zero_division=0))
        if present
        else 0.0
    )
    result["micro_f1"] = float(f1_score(y_true, y_pred, average="micro", zero_division=0))
    result["subset_accuracy"] = float(accuracy_score(y_true, y_pred))
    result["hamming_loss"] = float(hamming_loss(y_true, y_pred))
    result["per_class"] = _per_class(y_true, y_pred, label_names)
    if probs is not None:
        result["ece"] = expected_calibration_error(probs, y_true)
    return result


def _empty_per_class(label_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"label": name, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for name in label_names]


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    label_names: Sequence[str],
    *,
    probs: np.ndarray | None = None,
    slices: Mapping[str, np.ndarray] | None = None,
    multi_label: bool = False,
) -> dict[str, Any]:
    """Metrics of one prediction set, overall and per slice.

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        Shape (n,) integer class indices in ``[0, k)``, or (n, k) 0/1 indicators when ``multi_label``.
    label_names : sequence of str, length k
        Class names in index order; every class gets a ``per_class`` row, also classes absent from the data.
    probs : np.ndarray, shape (n, k), optional
        Predicted probabilities; adds ``ece`` (see :func:`training.calibration.expected_calibration_error`).
    slices : mapping of str to np.ndarray of bool, shape (n,), optional
        Named subsets (e.g. ``{"seed": source == "seed", "production": source == "production"}``); each
        gets the same metrics under ``result["slices"][name]``.
    multi_label : bool

    Returns
    -------
    dict
        Single-label: ``n``, ``macro_f1``, ``accuracy``, ``per_class`` (``label``, ``precision``, ``recall``,
        ``f1``, ``support``), ``confusion_matrix`` (k x k list, rows = true), ``ece`` when ``probs`` is given.
        Multi-label: ``n``, ``macro_f1``, ``micro_f1``, ``subset_accuracy``, ``hamming_loss``, ``per_class``,
        ``ece``. Metrics of an empty set (or empty slice) are ``None``. ``macro_f1`` averages over the
        classes that occur in ``y_true`` or ``y_pred``.
    """
    label_names = list(label_names)
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true {yt.shape} and y_pred {yp.shape} differ in shape")
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    if p is not None and p.shape != (yt.shape[0], len(label_names)):
        raise ValueError(f"probs must have shape ({yt.shape[0]}, {len(label_names)}), got {p.shape}")

    def run(mask: np.ndarray | None) -> dict[str, Any]:
        t, q = (yt, yp) if mask is None else (yt[mask], yp[mask])
        pp = None if p is None else (p if mask is None else p[mask])
        if multi_label:
            if t.ndim != 2 or t.shape[1] != len(label_names):
                raise ValueError(f"multi-label y_true must have shape (n, {len(label_names)})")
            return _evaluate_multi(t.astype(int), q.astype(int), label_names, pp)
        if t.ndim != 1:
            raise ValueError("single-label y_true must have shape (n,)")
        return _evaluate_single(t.astype(np.int64), q.astype(np.int64), label_names, pp)

    result = run(None)
    if slices:
        result["slices"] = {}
        for name, mask in slices.items():
            m = np.asarray(mask, dtype=bool)
            if m.shape != (yt.shape[0],):
                raise ValueError(f"slice {name!r} mask must have shape ({yt.shape[0]},), got {m.shape}")
            result["slices"][name] = run(m)
    return result


def aggregate_over_seeds(
    results: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("macro_f1", "accuracy", "ece")
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of scalar metrics over runs with different seeds.

    Parameters
    ----------
    results : sequence of dicts from :func:`evaluate`
    keys : metric names to aggregate; a key missing or ``None`` in a run is skipped for that run.

    Returns
    -------
    dict
        ``{key: {"mean": float, "std": float, "n": int}}`` for every key present in at least one run
        (``std`` is the sample standard deviation, 0.0 for a single run).
    """
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array([r[key] for r in results if r.get(key) is not None], dtype=np.float64)
        if values.size == 0:
            continue
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "n": int(values.size),
        }
    return out
