"""A loaded model version: :class:`Predictor` (encoder, head, calibration and serving backend) and what
one prediction pass yields (:class:`Prediction`). :mod:`training.artifacts` saves and loads them.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.backends import BACKENDS, ONNX_FILES, build_runner, write_onnx
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder, TokenStats
from training.heads import decide, decode_labels, head_logits, probabilities
from training.trained_model import TrainedModel

try:
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.predictor needs PyTorch (pip install 'torch==2.13.0').") from exc


@dataclass(frozen=True)
class Prediction:
    """Everything one prediction pass yields.

    Attributes
    ----------
    logits:
        ``(n, k)`` float32.
    probs:
        ``(n, k)`` float64 probabilities with the stored temperature (softmax or sigmoids).
    embeddings:
        ``(n, hidden)`` float32 pooled embeddings from the serving backend.
    predicted:
        Single-label: ``(n,)`` int64 class indices; multi-label: ``(n, k)`` bool indicator
        (stored thresholds).
    labels:
        The decisions as label names (a name per text, or a list of names per text).
    token_stats:
        Tokenization statistics under the stored preprocessing (``None`` when not requested).
    """

    logits: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    predicted: np.ndarray
    labels: list[str] | list[list[str]]
    token_stats: TokenStats | None


class Predictor:
    """A loaded model version: stored preprocessing, weights, calibration and serving backend.

    It holds no global state and opens no files after construction (an ONNX Runtime session at
    most), so a worker can cache one per model version.

    Parameters
    ----------
    encoder:
        The fp32 encoder with the version's preprocessing.
    head:
        The linear head.
    label_names, task, temperature, thresholds:
        As stored in ``labels.json`` and ``calibration.json``.
    backend:
        Serving backend (see :mod:`training.serving`); ``onnx_path`` for ONNX ones.
    directory, content_hash, metadata:
        Where it was loaded from and what the manifest and JSON files said (empty in memory).
    """

    def __init__(
        self,
        *,
        encoder: Encoder,
        head: nn.Linear,
        label_names: Sequence[str],
        task: str,
        temperature: float = 1.0,
        thresholds: Sequence[float] | None = None,
        backend: str = "torch_fp32",
        onnx_path: str | Path | None = None,
        directory: str | Path | None = None,
        content_hash: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.encoder = encoder
        self.head = head
        self.label_names = list(label_names)
        self.task = task
        self.temperature = float(temperature)
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.backend = backend
        self.directory = None if directory is None else Path(directory)
        self.content_hash = content_hash
        self.metadata = dict(metadata or {})
        self._onnx_tmp: tempfile.TemporaryDirectory[str] | None = None
        if backend in ONNX_FILES and onnx_path is None:
            # Not stored with the version (an explicit override): export for this object's lifetime.
            self._onnx_tmp = tempfile.TemporaryDirectory(prefix="predictor-onnx-")
            onnx_path = write_onnx(encoder, backend, self._onnx_tmp.name)
        self._runner = build_runner(encoder, backend, onnx_path=onnx_path)

    @classmethod
    def from_trained(cls, model: TrainedModel, *, backend: str = "torch_fp32") -> Predictor:
        """An in-memory predictor over a freshly trained model (shares its modules)."""
        return cls(
            encoder=model.encoder,
            head=model.classifier.head,
            label_names=model.label_names,
            task=model.task,
            temperature=model.temperature,
            thresholds=model.thresholds,
            backend=backend,
        )

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.encoder.config.preprocessing()

    @property
    def embedding_key(self) -> str:
        """What the embedding cache files this predictor's vectors under: the encoder's fingerprint for
        PyTorch fp32, the fingerprint joined with the backend's name for INT8 and ONNX (whose vectors
        differ slightly). Versions that share a frozen encoder share the key, so a new version finds the
        pool already embedded."""
        return embedding_key(self.encoder.fingerprint, self.backend)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
        cache: EmbeddingCache | None = None,
    ) -> np.ndarray:
        """Pooled embeddings from the serving backend, ``(n, hidden)`` float32.

        With ``cache``, texts already embedded under :attr:`embedding_key` (or, for INT8 and ONNX, by the
        same encoder in fp32) are read from it and only the others go through the model (and are stored).
        """
        if cache is None:
            return self.encoder.embed(texts, batch_size=batch_size, progress=progress, runner=self._runner)
        fp32 = self.encoder.fingerprint
        key = self.embedding_key
        return self.encoder.embed_cached(texts, cache, batch_size=batch_size, progress=progress,
                                         runner=self._runner, key=key,
                                         fallback_keys=() if key == fp32 else (fp32,))

    def predict(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
        with_token_stats: bool = True,
        cache: EmbeddingCache | None = None,
    ) -> Prediction:
        """Score texts with the stored preprocessing, calibration and thresholds.

        Parameters
        ----------
        texts:
            ``n`` texts.
        batch_size:
            Texts per forward pass.
        progress:
            ``progress(done, total)`` after every batch.
        with_token_stats:
            Also compute tokenization statistics (drift signals).
        cache:
            Embedding cache to read and extend (see :meth:`embed`).

        Returns
        -------
        Prediction
            Logits, probabilities ``(n, k)``, embeddings ``(n, hidden)``, decisions and token stats.
        """
        embeddings = self.embed(texts, batch_size=batch_size, progress=progress, cache=cache)
        return self.predict_embeddings(embeddings, texts if with_token_stats else None)

    def predict_embeddings(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> Prediction:
        """:meth:`predict` over embeddings already computed by this predictor's encoder (token statistics
        only when ``texts`` are given)."""
        logits = head_logits(self.head, embeddings)
        predicted = decide(logits, self.task, self.thresholds)
        return Prediction(
            logits=logits,
            probs=probabilities(logits, self.task, self.temperature),
            embeddings=embeddings,
            predicted=predicted,
            labels=decode_labels(predicted, self.label_names, self.task),
            token_stats=self.encoder.token_stats(texts) if texts is not None else None,
        )


def embedding_key(fingerprint: str, backend: str) -> str:
    """The embedding cache's key for ``backend``'s vectors of the encoder with ``fingerprint``."""
    if backend == "torch_fp32":
        return fingerprint
    return hashlib.sha256(f"{fingerprint}|{backend}".encode()).hexdigest()
