"""What one training run carries through its loops: the run state, progress and cancellation, the log,
early-stopping bookkeeping and the loss.

:func:`~training.train.train_classifier` builds one :class:`RunState`; the frozen-head loops
(:mod:`training.frozen`) and the fine-tuning loop (:mod:`training.finetune`) read their model, data,
settings and log from it instead of a dozen positional arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder
from training.heads import TextClassifier
from training.train_config import TrainConfig

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.run_state needs PyTorch (pip install torch).") from exc

ProgressCallback = Callable[[float, str, str], None]
"""``progress(fraction, stage, message)``; ``fraction`` rises monotonically from 0 to 1."""
CancelCheck = Callable[[], bool]
"""``should_cancel()``: polled between batches; returning True stops training with
:class:`TrainingCancelled`."""


class TrainingCancelled(Exception):
    """Raised when ``should_cancel()`` returned True; nothing was produced."""


class Tracker:
    """Monotone progress reporting plus prompt cancellation checks."""

    def __init__(self, progress: ProgressCallback | None, should_cancel: CancelCheck | None) -> None:
        self._progress = progress
        self._should_cancel = should_cancel
        self._last = 0.0

    def check(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise TrainingCancelled("training was cancelled")

    def report(self, fraction: float, stage: str, message: str) -> None:
        self.check()
        self._last = min(1.0, max(self._last, float(fraction)))
        if self._progress is not None:
            self._progress(self._last, stage, message)

    def embed_progress(self, start: float, end: float, what: str) -> Callable[[int, int], None]:
        def _report(done: int, total: int) -> None:
            self.report(
                start + (end - start) * done / max(total, 1), "embedding", f"{what}: {done}/{total} texts"
            )

        return _report


@dataclass
class TrainingLog:
    """What a run records as it goes; it becomes the :class:`~training.train.TrainedModel`'s record.

    Attributes
    ----------
    steps:
        One entry per optimizer step (see :func:`~training.optimizer.step_entry`).
    epochs:
        One entry per epoch: ``epoch``, ``phase``, ``train_loss``, ``val_loss``, ``val_macro_f1``.
    optimizer_groups:
        Per phase, the AdamW parameter groups (name, lr, weight_decay, parameter names).
    trainable:
        Names of every parameter that was trainable in some phase.
    best_epoch:
        The epoch whose weights were kept (the mean over cross-fit heads, rounded).
    """

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    optimizer_groups: list[dict[str, Any]] = field(default_factory=list)
    trainable: set[str] = field(default_factory=set)
    best_epoch: int = 0


@dataclass
class RunState:
    """One training run: the model being trained, its data, settings, progress tracker and log.

    Attributes
    ----------
    model:
        The classifier being trained; ``model.encoder`` is ``encoder.model``.
    encoder:
        The encoder with its preprocessing (tokenizes and embeds the texts).
    train_texts, y_train:
        Training texts and their encoded targets: ``(n,)`` class indices or ``(n, k)`` multi-hot.
    val_texts, y_val:
        Validation texts and targets (early stopping, validation metrics).
    task:
        ``"single_label"`` or ``"multi_label"``.
    mode:
        The resolved training mode (never ``"auto"``).
    config:
        The run's settings.
    tracker:
        Progress reporting and cancellation.
    cache:
        Embedding cache for frozen embeddings (a retrain embeds only new texts), or ``None``.
    log:
        Where the loops record steps, epochs, optimizer groups and the kept epoch.
    """

    model: TextClassifier
    encoder: Encoder
    train_texts: Sequence[str]
    y_train: np.ndarray
    val_texts: Sequence[str]
    y_val: np.ndarray
    task: str
    mode: str
    config: TrainConfig
    tracker: Tracker
    cache: EmbeddingCache | None
    log: TrainingLog


def loss_fn(task: str) -> nn.Module:
    """Cross-entropy for single-label, binary cross-entropy on logits for multi-label."""
    return nn.CrossEntropyLoss() if task == "single_label" else nn.BCEWithLogitsLoss()


def targets(y: np.ndarray, task: str) -> torch.Tensor:
    """Encoded labels as the loss expects them: class indices (long) or multi-hot rows (float)."""
    return torch.as_tensor(y, dtype=torch.long if task == "single_label" else torch.float32)


def val_loss(logits: np.ndarray, y: np.ndarray, task: str) -> float:
    """The training loss on validation logits (early stopping's tie-break)."""
    with torch.no_grad():
        return float(loss_fn(task)(torch.from_numpy(np.asarray(logits, dtype=np.float32)), targets(y, task)))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's weights."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class BestEpoch:
    """Early-stopping bookkeeping: validation macro-F1 decides, validation loss breaks ties.

    Small validation sets reach the same macro-F1 (often 1.0) after a few epochs; without the
    tie-break the first such epoch would win and an under-trained model would be kept.
    """

    def __init__(self) -> None:
        self.f1 = -1.0
        self.loss = math.inf
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, f1: float, loss: float, epoch: int, module: nn.Module) -> None:
        if f1 > self.f1 + 1e-9 or (f1 >= self.f1 - 1e-9 and loss < self.loss - 1e-6):
            self.f1, self.loss, self.epoch, self.state = f1, loss, epoch, snapshot(module)
