"""The per-signal tests of a drift window against a :class:`~training.drift_reference.DriftReference`.

Each signal (class mix, confidence, embeddings and novel samples, tokenisation, malformed Unicode) gives
:class:`SignalTest` rows: a p-value, whether its effect size exceeds the threshold in :class:`DriftConfig`, and
the sentence a person reads when it alerts. :func:`holm_bonferroni` corrects them together;
:func:`training.drift.drift_window` runs them all on one window (see :mod:`training.drift` for the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist, jensenshannon
from scipy.stats import binomtest, chi2_contingency, ks_2samp

from training.drift_reference import NOVELTY_NEIGHBOURS, NOVELTY_QUANTILE, DriftReference, l2_normalise
from training.drift_text import malformed_text_counts, summarise_tokens, token_arrays


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
    d = cdist(l2_normalise(np.asarray(embeddings, dtype=np.float64)), reference.sample)
    kk = min(NOVELTY_NEIGHBOURS, d.shape[1] - 1)
    distance = np.sort(d, axis=1)[:, :kk].mean(axis=1)
    baseline = reference.knn_distances
    return np.searchsorted(baseline, distance, side="right") / baseline.size



@dataclass
class SignalTest:
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


def class_signal(
    reference: DriftReference, counts: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], SignalTest]:
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
    return info, SignalTest("class_mix", p_value, js > cfg.class_js_threshold, reason)


def confidence_signal(
    reference: DriftReference, confidence: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], SignalTest]:
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
    return info, SignalTest(
        "confidence", p_value, statistic > cfg.confidence_ks_threshold and bool(reason), reason
    )


def embedding_signal(
    reference: DriftReference, embeddings: np.ndarray, cfg: DriftConfig
) -> tuple[dict[str, Any], list[SignalTest]]:
    window = l2_normalise(np.asarray(embeddings, dtype=np.float64))
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
    novel = sample_novelty(reference, embeddings) > NOVELTY_QUANTILE
    novel_share = float(novel.mean())
    novel_p = float(
        binomtest(int(novel.sum()), novel.size, 1.0 - NOVELTY_QUANTILE, alternative="greater").pvalue
    )
    tests = [
        SignalTest(
            "embedding_mmd",
            p_value,
            True,
            f"embeddings moved away from the reference data (MMD² {mmd2:.3f}, p={_format_p(p_value)})",
        ),
        SignalTest(
            "novel_samples",
            novel_p,
            novel_share - (1.0 - NOVELTY_QUANTILE) > cfg.novel_share_increase,
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


def token_signals(
    reference: DriftReference, token_stats: Any, cfg: DriftConfig
) -> tuple[dict[str, Any], list[SignalTest]]:
    counts, truncated, unk = token_arrays(token_stats)
    window = summarise_tokens(token_stats)
    ref = reference.token_summary
    n, n_ref = int(counts.size), int(ref["n_texts"])
    info: dict[str, Any] = {}
    for key in ("unk_token_rate", "texts_with_unk_share", "truncation_rate", "mean_length"):
        info[key] = window.get(key)
        info[f"reference_{key}"] = ref[key]
    tests: list[SignalTest] = []
    if n == 0:
        return info, tests

    truncation = float(truncated.mean())
    p_value = _share_test(int(truncated.sum()), n, ref["truncation_rate"], n_ref)
    tests.append(
        SignalTest(
            "truncation",
            p_value,
            truncation - ref["truncation_rate"] > cfg.truncation_rate_increase,
            f"more texts truncated: {ref['truncation_rate']:.0%} -> {truncation:.0%} (p={_format_p(p_value)})",
        )
    )

    unk_share = float((unk > 0).mean())
    p_value = _share_test(int((unk > 0).sum()), n, ref["texts_with_unk_share"], n_ref)
    tests.append(
        SignalTest(
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
            SignalTest(
                "length",
                float(length.pvalue),
                float(length.statistic) > cfg.length_ks_threshold,
                f"text length changed: mean {ref['mean_length']:.0f} -> {window['mean_length']:.0f} tokens "
                f"(KS {length.statistic:.2f} > {cfg.length_ks_threshold}, p={_format_p(float(length.pvalue))})",
            )
        )
    return info, tests


def malformed_signal(
    reference: DriftReference, texts: Sequence[str], cfg: DriftConfig
) -> tuple[dict[str, Any], list[SignalTest]]:
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
        SignalTest("malformed_unicode", p_value, share - ref_share > cfg.malformed_share_increase, reason)
    ]

