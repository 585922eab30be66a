"""CPU serving backends for a model version's encoder, and the per-model choice between them.

Backends (the linear head always runs in float32 on the pooled embeddings):

- ``torch_fp32``: the PyTorch model as trained.
- ``torch_int8``: PyTorch dynamic INT8 quantization of the encoder's ``nn.Linear`` layers
  (``torch.ao.quantization.quantize_dynamic``), computed at load time from the fp32 weights.
- ``onnx_fp32``: the encoder plus pooling exported to ONNX and run by ONNX Runtime.
- ``onnx_int8``: that ONNX graph with dynamic INT8 weights (``onnxruntime.quantization``).

INT8 changes the embeddings visibly, so whether it keeps accuracy is measured per model
(:func:`choose_serving_backend`) and recorded in the model version (``serving.json``), never assumed.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
from sklearn.metrics import accuracy_score

from training.encoder import BatchRunner, Encoder, PooledEncoder
from training.heads import decide, encode_labels, head_logits, macro_f1, probabilities

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.serving needs PyTorch (pip install 'torch==2.13.0').") from exc

if TYPE_CHECKING:
    from training.artifacts import Predictor

BACKENDS: tuple[str, ...] = ("torch_fp32", "torch_int8", "onnx_fp32", "onnx_int8")
BASELINE = "torch_fp32"
ONNX_FILES: dict[str, str] = {"onnx_fp32": "encoder.onnx", "onnx_int8": "encoder.int8.onnx"}
ONNX_OPSET = 17

ModuleT = TypeVar("ModuleT", bound=nn.Module)

logger = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime (and the ``onnx`` package needed to export) can be imported."""
    return (
        importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    )


def quantize_int8(module: ModuleT) -> ModuleT:
    """A copy of ``module`` with every ``nn.Linear`` dynamically quantized to INT8 weights.

    Weights are quantized per output channel (per-tensor scales cost MiniLM several points of
    embedding cosine similarity); activations are quantized per batch at run time; embeddings and
    LayerNorms stay float32.
    """
    with warnings.catch_warnings():
        # torch points users at torchao for new code; the eager dynamic API is still the CPU path here.
        warnings.simplefilter("ignore")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        quantized = torch.ao.quantization.quantize_dynamic(
            module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=False
        )
        return cast(ModuleT, quantized)


def module_runner(module: PooledEncoder) -> BatchRunner:
    """A batch runner over a (possibly quantized) :class:`~training.encoder.PooledEncoder`."""
    module.eval()

    def run(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return module(*(batch[name] for name in module.input_names))

    return run


def export_onnx(encoder: Encoder, path: str | Path) -> Path:
    """Export the encoder plus its pooling to ONNX (one file, dynamic batch and sequence axes).

    The graph takes the tokenizer's ``int64`` inputs of shape ``(b, t)`` and returns
    ``embedding`` of shape ``(b, hidden)``.

    Returns
    -------
    Path
        The written ``.onnx`` file.
    """
    path = Path(path)
    module = encoder.pooled_module().eval()
    sample = encoder.pad(
        encoder.tokenize(["an example text", "a second, somewhat longer example text"]), [0, 1]
    )
    inputs = tuple(sample[name] for name in encoder.input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in encoder.input_names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        # The TorchScript exporter (dynamo=False) needs no onnxscript and handles HF encoders well.
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            input_names=list(encoder.input_names),
            output_names=["embedding"],
            dynamic_axes=axes | {"embedding": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    return path


def quantize_onnx(source: str | Path, target: str | Path) -> Path:
    """Dynamic INT8 weight quantization of an ONNX graph (``onnxruntime.quantization``).

    Per-channel weights with the 7-bit reduced range: per-tensor scales lose MiniLM several points
    of embedding cosine similarity, and the reduced range avoids u8s8 saturation on CPUs without VNNI.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
    )
    return Path(target)


def write_onnx(encoder: Encoder, backend: str, directory: str | Path) -> Path:
    """Write the ONNX file that ``backend`` runs into ``directory`` (its name from ``ONNX_FILES``)."""
    directory = Path(directory)
    fp32 = export_onnx(encoder, directory / ONNX_FILES["onnx_fp32"])
    if backend == "onnx_fp32":
        return fp32
    if backend == "onnx_int8":
        target = quantize_onnx(fp32, directory / ONNX_FILES["onnx_int8"])
        fp32.unlink()
        return target
    raise ValueError(f"{backend!r} is not an ONNX backend")


def onnx_runner(path: str | Path, *, threads: int | None = None) -> BatchRunner:
    """A batch runner over an ONNX Runtime CPU session of an exported encoder.

    ``threads`` (intra-op) defaults to PyTorch's current setting, so both runtimes get the same cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(batch: Mapping[str, torch.Tensor]) -> np.ndarray:
        feed = {name: batch[name].cpu().numpy().astype(np.int64, copy=False) for name in names}
        return np.asarray(session.run(["embedding"], feed)[0], dtype=np.float32)

    return run


def build_runner(
    encoder: Encoder, backend: str, *, onnx_path: str | Path | None = None
) -> BatchRunner | None:
    """The batch runner of ``backend`` (``None`` means the encoder's own PyTorch fp32 path).

    Parameters
    ----------
    encoder:
        The fp32 encoder the backend derives from.
    backend:
        One of :data:`BACKENDS`.
    onnx_path:
        The exported graph, required for ONNX backends.
    """
    if backend == "torch_fp32":
        return None
    if backend == "torch_int8":
        return module_runner(quantize_int8(encoder.pooled_module()))
    if backend in ONNX_FILES:
        if onnx_path is None:
            raise ValueError(f"backend {backend!r} needs the exported ONNX file")
        return onnx_runner(onnx_path)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def _measure(
    predictor: Predictor,
    runner: BatchRunner | None,
    texts: Sequence[str],
    n_eval: int,
    y: np.ndarray,
    batch_size: int,
) -> tuple[dict[str, Any], np.ndarray]:
    encoder = predictor.encoder
    encoder.embed(texts[:batch_size], batch_size=batch_size, runner=runner)  # warm-up (allocations, sessions)
    started = time.perf_counter()
    embeddings = encoder.embed(texts, batch_size=batch_size, runner=runner)
    seconds = time.perf_counter() - started
    logits = head_logits(predictor.head, embeddings[:n_eval])
    predicted = decide(logits, predictor.task, predictor.thresholds)
    truth = y.astype(bool) if predictor.task == "multi_label" else y
    metrics: dict[str, Any] = {
        "available": True,
        "macro_f1": macro_f1(y, logits, predictor.task, predictor.thresholds),
        "accuracy": float(accuracy_score(truth, predicted)),
        "texts_per_second": len(texts) / seconds if seconds > 0 else float("inf"),
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
            metrics, probs = _measure(predictor, runner, timing_texts, len(texts), y, batch_size)
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
    backends, batch_size, min_timing_texts:
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
