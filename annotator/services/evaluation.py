"""Measuring a version on the stable holdout, with exactly what serving will answer.

``measure_holdout`` gives the version's reported metrics (each with a bootstrap 95% interval, per source slice,
calibration), ``save_holdout`` keeps the held-out examples with the version's decisions beside its artifact
(``HOLDOUT_FILE``), where the promotion decision (services.models.decide_promotion) reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HOLDOUT_FILE = "holdout.json"


def decision_names(predicted: np.ndarray, names: list[str], multi: bool) -> list[Any]:
    if multi:
        return [[names[j] for j in np.flatnonzero(row)] for row in predicted]
    return [names[int(i)] for i in predicted]


def save_holdout(directory: Path, example_ids: list[int], labels: list[Any], predicted: np.ndarray | None,
                  names: list[str], multi: bool) -> None:
    """The held-out examples with their labels as of the snapshot and the version's served decisions, beside
    the artifact: the promotion decision compares the serving version on exactly these."""
    decisions = [] if predicted is None else decision_names(predicted, names, multi)
    payload = {"example_ids": [int(pk) for pk in example_ids], "labels": labels, "predicted": decisions}
    (directory / HOLDOUT_FILE).write_text(json.dumps(payload))


def measure_holdout(predictor: Any, texts: list[str], labels: list[Any], sources: np.ndarray, names: list[str],
                    multi: bool, record: dict[str, Any], *, cache: Any = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """The version's reported metrics: the held-out labels against the decisions and probabilities that
    ``predictor`` (the serving backend with the stored temperature and thresholds) gives, each with a
    bootstrap 95% interval; or, below the documented minimum, the reason instead of numbers.

    Returns the ``holdout`` record and the decisions (``None`` without held-out examples)."""
    from annotator.services.holdout import HOLDOUT_MIN, HOLDOUT_MIN_PER_CLASS, TOO_FEW, holdout_reason
    from training.calibration import apply_temperature, calibration_report
    from training.metrics import ece_interval, evaluate, metric_intervals

    out = dict(record)
    reason = holdout_reason(labels, names)
    if not texts:
        return {**out, "reason": reason}, None
    prediction = predictor.predict(texts, with_token_stats=False, cache=cache)
    predicted = prediction.predicted.astype(np.int64)
    if reason:
        return {**out, "reason": reason}, predicted
    y = label_matrix(labels, names, multi)
    measured = evaluate(y, predicted, names, probs=prediction.probs, multi_label=multi)
    intervals = metric_intervals(y, predicted, names, multi_label=multi)
    for key, interval in intervals.items():
        if key != "per_class":
            measured[f"{key}_ci"] = interval
    for row, interval in zip(measured["per_class"], intervals["per_class"], strict=True):
        row.update({f"{key}_ci": value for key, value in interval.items()})
        if row["support"] < HOLDOUT_MIN_PER_CLASS:
            row["reason"] = TOO_FEW
    calibration = calibration_report(prediction.logits, y, multi_label=multi, temperature=predictor.temperature)
    measured["ece_before"] = calibration.ece_before
    measured["ece_before_ci"] = ece_interval(apply_temperature(prediction.logits, 1.0, multi_label=multi), y)
    measured["ece_ci"] = ece_interval(prediction.probs, y)
    measured["calibration"] = calibration.to_dict()
    slices = {}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        if mask.sum() < HOLDOUT_MIN:
            slices[f"source={source}"] = {"n": int(mask.sum()), "reason": TOO_FEW}
            continue
        part = evaluate(y[mask], predicted[mask], names, multi_label=multi)
        part["macro_f1_ci"] = metric_intervals(y[mask], predicted[mask], names, multi_label=multi)["macro_f1"]
        slices[f"source={source}"] = {key: part[key] for key in ("n", "macro_f1", "macro_f1_ci")}
    measured["slices"] = slices
    return {**out, **measured}, predicted


def reported(holdout: dict[str, Any]) -> dict[str, Any]:
    """The headline figures every reader of a version takes (the models API, learning curve, overview, cold
    start): the holdout's, or ``None`` when it cannot be measured."""
    keys = ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci", "micro_f1", "micro_f1_ci", "ece", "ece_ci",
            "ece_before", "ece_before_ci")
    return {key: holdout.get(key) for key in keys}



def label_matrix(labels: list[Any], names: list[str], multi: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    if not multi:
        return np.array([index[label] for label in labels], dtype=np.int64)
    matrix = np.zeros((len(labels), len(names)), dtype=np.int64)
    for row, values in enumerate(labels):
        for name in values:
            matrix[row, index[name]] = 1
    return matrix

