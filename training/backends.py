"""CPU serving backends for a model version's encoder: what each one is and how to build it.

Backends (the linear head always runs in float32 on the pooled embeddings):

- ``torch_fp32``: the PyTorch model as trained.
- ``torch_int8``: PyTorch dynamic INT8 quantization of the encoder's ``nn.Linear`` layers
  (``torch.ao.quantization.quantize_dynamic``), computed at load time from the fp32 weights.
- ``onnx_fp32``: the encoder plus pooling exported to ONNX and run by ONNX Runtime.
- ``onnx_int8``: that ONNX graph with dynamic INT8 weights (``onnxruntime.quantization``).

Both :mod:`training.artifacts` (a loaded version serves with its recorded backend) and
:mod:`training.serving` (which measures the backends and picks one per model) build runners here.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar, cast

import numpy as np

from training.encoder import BatchRunner, Encoder, PooledEncoder

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.backends needs PyTorch (pip install 'torch==2.13.0').") from exc

BACKENDS: tuple[str, ...] = ("torch_fp32", "torch_int8", "onnx_fp32", "onnx_int8")
BASELINE = "torch_fp32"
ONNX_FILES: dict[str, str] = {"onnx_fp32": "encoder.onnx", "onnx_int8": "encoder.int8.onnx"}
ONNX_OPSET = 17

ModuleT = TypeVar("ModuleT", bound=nn.Module)


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
