"""Drift signals for windows of production traffic, against a reference kept with the model version.

A :class:`~training.drift_reference.DriftReference` summarises what "normal" traffic looks like to one model version: its predicted
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
Holm's step-down procedure (:func:`~training.drift_signals.holm_bonferroni`): sorted ascending, the j-th smallest of ``m``
p-values is compared with ``alpha / (m - j)`` and the procedure stops at the first that is not below its
level. A window drawn from the reference distribution then alerts with probability at most ``alpha``
(the family-wise error rate, whatever the dependence between the tests), and Holm never misses a
shift that plain Bonferroni (every p-value against ``alpha / m``) would catch. A test alerts when Holm
rejects it *and* its effect size exceeds the threshold, so a huge window does not alert on a negligible
shift (the effect-size condition can only remove alerts, so the error rate stays at most ``alpha``).

Which data makes the reference matters as much as the tests. The data a team labels through active
learning is deliberately unrepresentative (the queue picks the examples the model is least sure of), so
a reference built from the labeled validation split alone makes ordinary traffic look drifted: more
confident, a different class mix. :func:`~training.drift_reference.build_drift_reference` summarises any set of rows, and
:func:`~training.drift_reference.combine_drift_references` pools several summaries, each standing for its share of a population:
the unlabeled pool scored by the version, plus the labeled data (its validation split, out-of-sample)
for the examples that left the pool to be labeled.

Where each part lives: the reference in :mod:`training.drift_reference`, the text and token statistics in
:mod:`training.drift_text`, the tests and their thresholds (:class:`~training.drift_signals.DriftConfig`) in
:mod:`training.drift_signals`; this module runs them on one window (:func:`drift_window`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.drift_reference import DriftReference, predicted_class_counts
from training.drift_signals import (
    DriftConfig,
    class_signal,
    confidence_signal,
    embedding_signal,
    holm_bonferroni,
    malformed_signal,
    token_signals,
)
from training.query import confidence_scores


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

    counts = predicted_class_counts(p, reference.multi_label)
    class_shift, class_test = class_signal(reference, counts, cfg)
    confidence = confidence_scores(p, multi_label=reference.multi_label)
    confidence_shift, confidence_test = confidence_signal(reference, confidence, cfg)
    tests = [class_test, confidence_test]
    embedding_drift: dict[str, Any] | None = None
    if use_embeddings:
        embedding_drift, more = embedding_signal(reference, np.asarray(embeddings), cfg)
        tests += more
    anomalies: dict[str, Any] = {"alerts": []}
    if use_tokens:
        info, more = token_signals(reference, token_stats, cfg)
        anomalies.update(info)
        tests += more
    if use_texts:
        assert texts is not None
        info, more = malformed_signal(reference, texts, cfg)
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

