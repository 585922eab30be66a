"""Temperature scaling and calibration diagnostics (ECE, reliability bins).

Temperature scaling divides the logits by one scalar ``T`` fitted on held-out (validation) data by
minimising the negative log-likelihood. It never changes the argmax, so accuracy and macro-F1 stay
the same; only the confidence values move. Single-label models use softmax + cross-entropy,
multi-label models sigmoid + binary cross-entropy, matching how they were trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, log_softmax, logit, softmax

#: Temperatures are searched in this range. A tiny validation set on which every prediction is right
#: has its NLL minimised at T -> 0; the bound keeps that from turning every later prediction into 0/1.
DEFAULT_TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


def _as_logits(logits: np.ndarray) -> np.ndarray:
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"logits must have shape (n, k), got {array.shape}")
    return array


def temperature_nll(
    logits: np.ndarray, labels: np.ndarray, temperature: float, *, multi_label: bool = False
) -> float:
    """Mean negative log-likelihood of ``labels`` under ``logits / temperature``.

    Parameters
    ----------
    logits : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int for single-label, (n, k) 0/1 for multi-label
    temperature : float, > 0
    multi_label : bool
        Sigmoid + binary cross-entropy (mean over examples and classes) instead of softmax + NLL.

    Returns
    -------
    float
    """
    z = _as_logits(logits) / float(temperature)
    if z.shape[0] == 0:
        return 0.0
    if multi_label:
        y = np.asarray(labels, dtype=np.float64)
        return float(-np.mean(y * log_expit(z) + (1.0 - y) * log_expit(-z)))
    y_idx = np.asarray(labels, dtype=np.int64)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(z.shape[0]), y_idx]))


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    multi_label: bool = False,
    bounds: tuple[float, float] = DEFAULT_TEMPERATURE_BOUNDS,
) -> float:
    """Fit the temperature that minimises the NLL of ``labels`` on ``logits / T``.

    The NLL is convex in ``1 / T`` for both softmax and sigmoid outputs, so a bounded scalar search
    over ``log T`` finds the global minimum; no learning rate or iteration count to tune.

    Parameters
    ----------
    logits : np.ndarray, shape (n, k)
        Raw (uncalibrated) model outputs on held-out data.
    labels : np.ndarray, shape (n,) int in [0, k) for single-label, or (n, k) 0/1 for multi-label
    multi_label : bool
        Fit a sigmoid/BCE temperature instead of a softmax/NLL one.
    bounds : (float, float)
        Search range for ``T``. The result lies within it.

    Returns
    -------
    float
        The temperature ``T > 0``. ``1.0`` when there is nothing to fit (no rows, or logits that do not
        vary, so every ``T`` gives the same likelihood).
    """
    z = _as_logits(logits)
    if z.shape[0] == 0:
        return 1.0
    y = np.asarray(labels)
    if multi_label:
        if y.shape != z.shape:
            raise ValueError(f"multi-label labels must have shape {z.shape}, got {y.shape}")
    else:
        if y.shape != (z.shape[0],):
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
            raise ValueError(f"labels must lie in [0, {z.shape[1]})")
    spread = z - z.mean(axis=1, keepdims=True) if not multi_label else z
    if np.allclose(spread, 0.0):
        return 1.0
    low, high = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(
        lambda log_t: temperature_nll(z, y, float(np.exp(log_t)), multi_label=multi_label),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float, *, multi_label: bool = False) -> np.ndarray:
    """Calibrated probabilities from logits.

    Parameters
    ----------
    logits : np.ndarray, shape (n, k)
    temperature : float, > 0
    multi_label : bool
        Independent sigmoids per class instead of a softmax over classes.

    Returns
    -------
    np.ndarray, shape (n, k), float64
        Rows sum to 1 (single-label); each entry in [0, 1] (multi-label).
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    z = _as_logits(logits) / float(temperature)
    return expit(z) if multi_label else softmax(z, axis=1)


def _confidence_and_correct(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-prediction confidence and correctness.

    Single-label (labels of shape (n,)): the top-class probability and whether the argmax is right.
    Multi-label (labels of shape (n, k)): every (example, class) pair is a binary prediction with
    confidence ``max(p, 1 - p)``, right when ``(p >= 0.5) == label``.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (n, k), got {p.shape}")
    if y.ndim == 2:
        if y.shape != p.shape:
            raise ValueError(f"multi-label labels must have shape {p.shape}, got {y.shape}")
        flat = p.ravel()
        return np.maximum(flat, 1.0 - flat), (flat >= 0.5) == y.ravel().astype(bool)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
    return p.max(axis=1), p.argmax(axis=1) == y


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence: bin i holds (i / n_bins, (i + 1) / n_bins]; exactly 0 goes to the first."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def calibration_cells(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example sums behind the ECE, so that resampling examples (a bootstrap) re-weighs whole rows.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int or (n, k) 0/1 (see :func:`reliability_bins`)
    n_bins : int

    Returns
    -------
    count, confidence, correct : np.ndarray, each of shape (n, n_bins)
        Per example and bin: how many of its predictions fall in the bin (1 for single-label, up to k
        for multi-label), the sum of their confidences and how many of them are right. For example
        weights ``w`` (shape ``(n,)``) the ECE is ``sum_b |w @ correct - w @ confidence| / sum(w @ count)``.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    p = np.asarray(probs, dtype=np.float64)
    confidence, correct = _confidence_and_correct(p, labels)
    n = p.shape[0]
    per_row = confidence.size // n if n else 1
    rows = np.repeat(np.arange(n), per_row)
    index = _bin_index(confidence, n_bins)
    count = np.zeros((n, n_bins))
    conf = np.zeros((n, n_bins))
    right = np.zeros((n, n_bins))
    np.add.at(count, (rows, index), 1.0)
    np.add.at(conf, (rows, index), confidence)
    np.add.at(right, (rows, index), correct.astype(np.float64))
    return count, conf, right


def thresholds_for_logits(thresholds: Sequence[float], temperature: float) -> list[float]:
    """Re-express multi-label thresholds on calibrated probabilities on the scale serving compares.

    Serving (:func:`training.heads.decide`) predicts class ``j`` when ``sigmoid(z_j) >= t_j``, on the raw
    logits ``z``. Thresholds tuned on the calibrated probabilities ``sigmoid(z / T)`` that serving reports
    become ``sigmoid(T * logit(t))`` there, so a class is predicted exactly when its reported, calibrated
    probability reaches the tuned threshold.

    Parameters
    ----------
    thresholds : sequence of float, length k
        Thresholds in ``(0, 1)`` on calibrated probabilities.
    temperature : float, > 0

    Returns
    -------
    list of float
        ``k`` thresholds in ``(0, 1)`` on ``sigmoid(logits)``. The logit is clipped to ``[-30, 30]`` so
        the value stays strictly inside ``(0, 1)`` in float64 (only logits beyond 30 could decide otherwise).
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    t = np.asarray(thresholds, dtype=np.float64)
    if np.any(t <= 0) or np.any(t >= 1):
        raise ValueError("thresholds must lie in (0, 1)")
    return [float(v) for v in expit(np.clip(temperature * logit(t), -30.0, 30.0))]


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict[str, Any]]:
    """Equal-width confidence bins for a reliability diagram.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int (single-label) or (n, k) 0/1 (multi-label, one prediction per cell)
    n_bins : int

    Returns
    -------
    list of dict
        One dict per bin: ``lower``, ``upper``, ``count``, ``accuracy`` and ``confidence`` (means over
        the bin; ``None`` for an empty bin). Counts sum to the number of predictions.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    confidence, correct = _confidence_and_correct(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = _bin_index(confidence, n_bins)
    bins: list[dict[str, Any]] = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "accuracy": float(correct[members].mean()) if count else None,
                "confidence": float(confidence[members].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: bin-size-weighted mean of ``|accuracy - confidence|``.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int or (n, k) 0/1 (see :func:`reliability_bins`)
    n_bins : int

    Returns
    -------
    float
        In [0, 1]; 0.0 for no rows.
    """
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


@dataclass
class CalibrationReport:
    """What temperature scaling did on one held-out set. JSON-able through :meth:`to_dict`."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int
    multi_label: bool = False
    bins_before: list[dict[str, Any]] = field(default_factory=list)
    bins_after: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_report(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    multi_label: bool = False,
    temperature: float | None = None,
    n_bins: int = 15,
) -> CalibrationReport:
    """Fit (or apply a given) temperature and report ECE/NLL before and after.

    Parameters
    ----------
    logits : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int, or (n, k) 0/1 when ``multi_label``
    multi_label : bool
    temperature : float, optional
        Use this temperature instead of fitting one. Pass a temperature fitted on other data to get an
        unbiased "after" (fitting and measuring on the same rows is slightly optimistic).
    n_bins : int

    Returns
    -------
    CalibrationReport
    """
    t = (
        fit_temperature(logits, labels, multi_label=multi_label)
        if temperature is None
        else float(temperature)
    )
    before = apply_temperature(logits, 1.0, multi_label=multi_label)
    after = apply_temperature(logits, t, multi_label=multi_label)
    return CalibrationReport(
        temperature=t,
        ece_before=expected_calibration_error(before, labels, n_bins),
        ece_after=expected_calibration_error(after, labels, n_bins),
        nll_before=temperature_nll(logits, labels, 1.0, multi_label=multi_label),
        nll_after=temperature_nll(logits, labels, t, multi_label=multi_label),
        n=int(np.asarray(logits).shape[0]),
        multi_label=multi_label,
        bins_before=reliability_bins(before, labels, n_bins),
        bins_after=reliability_bins(after, labels, n_bins),
    )
