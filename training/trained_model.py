"""A trained classifier and its training record: what :func:`~training.train.train_classifier` returns
and :func:`~training.artifacts.save_artifact` writes to disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.encoder import Encoder
from training.heads import TextClassifier, decide, head_logits, probabilities
from training.train_config import TrainConfig


@dataclass
class TrainedModel:
    """A trained classifier plus everything a model version records about its training.

    Attributes
    ----------
    encoder:
        The (possibly fine-tuned) encoder with its preprocessing; ``encoder.model`` is
        ``classifier.encoder``.
    classifier:
        The module (encoder, pooling, dropout, linear head), in eval mode.
    label_names:
        Class names; column ``j`` of logits and probabilities is ``label_names[j]``.
    task:
        ``"single_label"`` or ``"multi_label"``.
    mode:
        The training mode actually used (``"auto"`` resolved).
    config:
        The settings it was trained with.
    thresholds:
        Multi-label: per-class decision thresholds on ``sigmoid(logits)``, the scale
        :func:`~training.heads.decide` compares; ``None`` for single-label. :func:`calibrate` tunes them on
        the calibrated probabilities and re-expresses them on this scale, so a class is predicted exactly
        when its calibrated probability reaches the tuned threshold.
    temperature:
        Temperature applied by :meth:`predict_proba` (fitted by the caller; 1.0 means none).
    best_epoch:
        1-based epoch whose weights were kept (early stopping).
    val_metrics:
        Validation metrics of the kept weights (``macro_f1``, ...).
    step_log:
        One entry per optimizer step: ``step``, ``phase``, ``epoch``, ``loss``, ``grad_norm``,
        ``lr`` (per parameter unit), ``lr_head``, ``lr_encoder``.
    epoch_log:
        One entry per epoch: ``epoch``, ``phase``, ``train_loss``, ``val_macro_f1``.
    optimizer_groups:
        Per phase, the AdamW parameter groups (name, lr, weight_decay, parameter names).
    trainable_parameters:
        Names of every parameter that was trainable in some phase.
    val_source:
        ``"given"``, ``"split"`` (stratified from the training data) or ``"train"`` (too few
        examples to split: validation ran on the training data).
    seconds:
        Wall time of training.
    """

    encoder: Encoder
    classifier: TextClassifier
    label_names: list[str]
    task: str
    mode: str
    config: TrainConfig
    thresholds: list[float] | None
    best_epoch: int
    val_metrics: dict[str, float]
    step_log: list[dict[str, Any]]
    epoch_log: list[dict[str, Any]]
    optimizer_groups: list[dict[str, Any]]
    trainable_parameters: list[str]
    val_source: str
    seconds: float
    temperature: float = 1.0

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Pooled embeddings, ``(n, hidden)`` float32."""
        return self.encoder.embed(texts, batch_size=batch_size or self.config.eval_batch_size)

    def logits_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Head logits from embeddings, ``(n, hidden)`` -> ``(n, k)``."""
        return head_logits(self.classifier.head, embeddings)

    def predict_logits(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Logits, ``(n, k)`` float32."""
        return self.logits_from_embeddings(self.embed(texts, batch_size=batch_size))

    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Probabilities with the model's temperature, ``(n, k)``: softmax (single) or sigmoids (multi)."""
        return probabilities(self.predict_logits(texts, batch_size=batch_size), self.task, self.temperature)

    def predict(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Decisions: class indices ``(n,)`` (single) or a bool indicator ``(n, k)`` (multi)."""
        return decide(self.predict_logits(texts, batch_size=batch_size), self.task, self.thresholds)
