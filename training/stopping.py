"""A stopping signal for active learning: stabilizing predictions (Bloodgood and Vijay-Shanker, 2009).

Each new model version predicts a fixed set of unlabeled examples (the *stop set*). When consecutive
versions agree on it almost perfectly, several times in a row, the labels added between them no longer
change what the model does, and more labels of the same kind are unlikely to help.

- :func:`prediction_agreement`: Cohen's kappa between two versions' predictions on the same items.
- :func:`changed_share`: the share of items whose prediction changed.
- :func:`predictions_stopped`: the stopping rule over the kappas of consecutive versions.

The rule used here is: stopped when each of the last ``window`` kappas (default 3) is at least
``threshold`` (default 0.99). Bloodgood and Vijay-Shanker stop when the *mean* of the last three kappas
reaches 0.99; requiring every one of them is slightly stricter (it never stops earlier than the mean rule)
and keeps the message honest: "kappa 0.99 over the last 3 versions" holds for each of those versions, and
one version that moved the predictions resets the count.

Multi-label predictions are compared as one flattened label-indicator matrix: every (item, class)
decision is one binary rating, and kappa is computed over all of them together (a micro kappa). The mean
of per-class kappas was not used because a class that neither version predicts anywhere on the stop set
has no kappa of its own (0/0), and rare classes would swing the mean.

Nothing here imports Django: inputs are numpy arrays and plain sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score

DEFAULT_WINDOW = 3
DEFAULT_THRESHOLD = 0.99


def _pair(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(before)
    b = np.asarray(after)
    if a.shape != b.shape:
        raise ValueError(f"both versions must predict the same items: shapes {a.shape} and {b.shape}")
    if a.ndim not in (1, 2):
        raise ValueError(f"predictions must have shape (n,) or (n, k), got {a.shape}")
    return a, b


def prediction_agreement(before: np.ndarray, after: np.ndarray) -> float | None:
    """Cohen's kappa between two versions' predictions on the same items.

    Parameters
    ----------
    before, after : np.ndarray, shape (n,) or (n, k)
        Shape (n,): one predicted class per item (class indices or names), single-label.
        Shape (n, k): 0/1 label indicators per item and class, multi-label; kappa is then computed over
        the flattened (n * k,) indicators (see the module docstring).

    Returns
    -------
    float or None
        Kappa in [-1, 1]; 1.0 when the predictions are identical (including the degenerate case where
        both versions predict one constant class, for which the formula is 0/0); None when there is no
        item to compare (n = 0, or k = 0).

    Raises
    ------
    ValueError
        When the shapes differ or are not 1-D or 2-D.
    """
    a, b = _pair(before, after)
    if a.size == 0:
        return None
    a, b = a.reshape(-1), b.reshape(-1)
    if np.array_equal(a, b):
        return 1.0
    # Not identical, so the expected agreement is below 1 and the formula is defined.
    kappa = float(cohen_kappa_score(a, b))
    return kappa if math.isfinite(kappa) else None


def changed_share(before: np.ndarray, after: np.ndarray) -> float | None:
    """The share of items whose prediction changed between two versions.

    Parameters
    ----------
    before, after : np.ndarray, shape (n,) or (n, k)
        As in :func:`prediction_agreement`; a multi-label item counts as changed when any of its k
        indicators changed.

    Returns
    -------
    float or None
        In [0, 1]; None when n = 0.
    """
    a, b = _pair(before, after)
    if a.shape[0] == 0:
        return None
    differs = a != b
    if differs.ndim == 2:
        differs = differs.any(axis=1)
    return float(differs.mean())


def predictions_stopped(
    kappas: Sequence[float | None],
    *,
    window: int = DEFAULT_WINDOW,
    threshold: float = DEFAULT_THRESHOLD,
) -> bool:
    """Whether predictions have stabilized: each of the last ``window`` kappas is at least ``threshold``.

    Parameters
    ----------
    kappas : sequence of float or None, length m
        Kappa of each version with the one before it, oldest first. None marks a version that could not
        be compared (no earlier version, too few common items); it breaks the run like a low kappa.
    window : int, default 3
        How many consecutive versions must agree with their predecessor.
    threshold : float, default 0.99
        The kappa each of them must reach.

    Returns
    -------
    bool
        False while fewer than ``window`` kappas exist.

    Raises
    ------
    ValueError
        When ``window`` is below 1 or ``threshold`` is not a finite number.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if len(kappas) < window:
        return False
    return all(k is not None and math.isfinite(k) and k >= threshold for k in kappas[-window:])
