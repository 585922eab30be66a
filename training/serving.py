"""The per-model choice of a CPU serving backend (the backends themselves are in :mod:`training.backends`).

INT8 changes the embeddings visibly, so whether it keeps accuracy is measured per model
(:func:`choose_serving_backend`) and recorded in the model version (``serving.json``), never assumed.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score

from training.artifacts import Predictor, embedding_key
from training.backends import (
    BACKENDS,
    BASELINE,
    ONNX_FILES,
    build_runner,
    export_onnx,
    onnxruntime_available,
    quantize_onnx,
)
from training.embedding_cache import EmbeddingCache
from training.encoder import BatchRunner
from training.heads import decide, encode_labels, head_logits, macro_f1, probabilities

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.serving needs PyTorch (pip install 'torch==2.13.0').") from exc

logger = logging.getLogger(__name__)
# With an embedding cache, a backend whose accuracy pass embedded fewer texts than this is timed on this many.
TIMING_SAMPLE = 128


def _measure(
    predictor: Predictor,
    runner: BatchRunner | None,
    texts: Sequence[str],
    n_eval: int,
    y: np.ndarray,
    batch_size: int,
    cache: EmbeddingCache | None = None,
    key: str | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    encoder = predictor.encoder
    encoder.embed(texts[:batch_size], batch_size=batch_size, runner=runner)  # warm-up (allocations, sessions)
    if cache is None:
        started = time.perf_counter()
        embeddings = encoder.embed(texts, batch_size=batch_size, runner=runner)
        seconds, timed = time.perf_counter() - started, len(texts)
    else:
        # The accuracy pass reads this backend's stored vectors (a frozen encoder's are the same in every
        # version); speed is a property of the encoder and backend, timed on what the pass embedded, or on
        # a sample when it embedded too few.
        before = encoder.texts_embedded
        started = time.perf_counter()
        embeddings = encoder.embed_cached(texts[:n_eval], cache, batch_size=batch_size, runner=runner, key=key)
        seconds, timed = time.perf_counter() - started, encoder.texts_embedded - before
        if timed < TIMING_SAMPLE:
            sample = list(texts[:TIMING_SAMPLE])
            started = time.perf_counter()
            encoder.embed(sample, batch_size=batch_size, runner=runner)
            seconds, timed = time.perf_counter() - started, len(sample)
    logits = head_logits(predictor.head, embeddings[:n_eval])
    predicted = decide(logits, predictor.task, predictor.thresholds)
    truth = y.astype(bool) if predictor.task == "multi_label" else y
    metrics: dict[str, Any] = {
        "available": True,
        "macro_f1": macro_f1(y, logits, predictor.task, predictor.thresholds),
        "accuracy": float(accuracy_score(truth, predicted)),
        "texts_per_second": timed / seconds if seconds > 0 else float("inf"),
        "seconds": seconds,
    }
    return metrics, probabilities(logits, predictor.task, predictor.temperature)


def measure_backends(
    predictor: Predictor,
    texts: Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    backends: Sequence[str] = BACKENDS,
    batch_size: int = 32,
    min_timing_texts: int = 64,
    cache: EmbeddingCache | None = None,
) -> dict[str, dict[str, Any]]:
    """Accuracy and throughput of each backend on the same labeled texts.

    Parameters
    ----------
    predictor:
        The fp32 model (e.g. ``Predictor.from_trained(model)``).
    texts, labels:
        ``n`` labeled texts (label names, or lists of names for multi-label).
    backends:
        Subset of :data:`BACKENDS`; the fp32 baseline is always measured first. ONNX ones are
        reported unavailable without onnxruntime.
    batch_size:
        Texts per batch.
    min_timing_texts:
        Texts are repeated up to at least this many for a steadier throughput figure.
    cache:
        Embedding cache (a frozen encoder's vectors are the same in every version): each backend's
        accuracy pass reads and extends its own entries (training.predictor.embedding_key), and a
        backend found there is timed on :data:`TIMING_SAMPLE` texts instead.

    Returns
    -------
    dict
        Backend name to ``{available, macro_f1, accuracy, texts_per_second, seconds,
        max_abs_prob_diff}`` (the last against the fp32 baseline's probabilities).
    """
    if not texts or len(texts) != len(labels):
        raise ValueError("need non-empty texts with one label entry each")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    y = encode_labels(labels, predictor.label_names, predictor.task)
    texts = list(texts)
    timing_texts = (texts * (min_timing_texts // len(texts) + 1))[: max(min_timing_texts, len(texts))]
    results: dict[str, dict[str, Any]] = {}
    baseline_probs: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        onnx_paths: dict[str, Path] = {}
        for backend in [BASELINE, *[b for b in backends if b != BASELINE]]:
            if backend in ONNX_FILES:
                if not onnxruntime_available():
                    results[backend] = {"available": False, "reason": "onnxruntime is not installed"}
                    continue
                if "onnx_fp32" not in onnx_paths:
                    onnx_paths["onnx_fp32"] = export_onnx(
                        predictor.encoder, Path(tmp) / ONNX_FILES["onnx_fp32"]
                    )
                if backend == "onnx_int8":
                    onnx_paths[backend] = quantize_onnx(
                        onnx_paths["onnx_fp32"], Path(tmp) / ONNX_FILES[backend]
                    )
            runner = build_runner(predictor.encoder, backend, onnx_path=onnx_paths.get(backend))
            key = embedding_key(predictor.encoder.fingerprint, backend)
            metrics, probs = _measure(predictor, runner, timing_texts, len(texts), y, batch_size, cache, key)
            baseline_probs = probs if baseline_probs is None else baseline_probs
            metrics["max_abs_prob_diff"] = float(np.abs(probs - baseline_probs).max())
            results[backend] = metrics
    return results


def pick_backend(results: Mapping[str, Mapping[str, Any]], tolerance: float) -> str:
    """The fastest backend whose macro-F1 and accuracy are at most ``tolerance`` below fp32's.

    The fp32 baseline always qualifies, so it is the answer when nothing else does.

    Parameters
    ----------
    results:
        Output of :func:`measure_backends` (must include the baseline).
    tolerance:
        Largest allowed absolute drop, e.g. 0.01 for one point of macro-F1 and of accuracy.
    """
    qualified = [name for name in results if _qualifies(results, name, tolerance)]
    return max(qualified, key=lambda name: results[name]["texts_per_second"])


def _qualifies(results: Mapping[str, Mapping[str, Any]], name: str, tolerance: float) -> bool:
    base, candidate = results[BASELINE], results[name]
    if name == BASELINE:
        return True
    return bool(
        candidate.get("available")
        and base["macro_f1"] - candidate["macro_f1"] <= tolerance
        and base["accuracy"] - candidate["accuracy"] <= tolerance
    )


def choose_serving_backend(
    predictor: Predictor,
    val_texts: Sequence[str],
    val_labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    tolerance: float = 0.01,
    backends: Sequence[str] = BACKENDS,
    batch_size: int = 32,
    min_timing_texts: int = 64,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Measure each backend on validation data and pick the fastest that keeps accuracy.

    See :func:`measure_backends` for the measurements and :func:`pick_backend` for the rule.

    Parameters
    ----------
    predictor:
        The fp32 model (e.g. ``Predictor.from_trained(model)`` before saving it).
    val_texts, val_labels:
        Held-out labeled data (``n`` texts).
    tolerance:
        Largest allowed drop in macro-F1 and in accuracy (absolute).
    backends, batch_size, min_timing_texts, cache:
        As in :func:`measure_backends`.

    Returns
    -------
    dict
        JSON-ready record ``{"backend", "baseline", "tolerance", "criterion", "n_texts", "results":
        {name: {..., "qualifies"}}, "versions"}``; store it with ``save_artifact(..., serving=...)``.
    """
    results = measure_backends(
        predictor,
        val_texts,
        val_labels,
        backends=backends,
        batch_size=batch_size,
        min_timing_texts=min_timing_texts,
        cache=cache,
    )
    chosen = pick_backend(results, tolerance)
    for name, metrics in results.items():
        if metrics.get("available"):
            metrics["qualifies"] = _qualifies(results, name, tolerance)
    logger.info("serving backend %s chosen (tolerance %s)", chosen, tolerance)
    return {
        "backend": chosen,
        "baseline": BASELINE,
        "tolerance": tolerance,
        "criterion": "fastest backend whose macro-F1 and accuracy drops vs torch_fp32 are <= tolerance",
        "n_texts": len(val_texts),
        "results": results,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    versions = {"torch": str(torch.__version__)}
    if onnxruntime_available():
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return versions
