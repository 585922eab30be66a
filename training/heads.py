"""The classifier module (encoder + pooling + dropout + linear head) and its output maths.

Every training mode produces the same :class:`TextClassifier`, so every model version has the same
weight layout (``encoder.*`` and ``head.*``) whatever the mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import expit, logit, softmax
from sklearn.metrics import f1_score

from training.encoder import model_config, pool

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.heads needs PyTorch (pip install 'torch==2.13.0').") from exc

TASKS: tuple[str, ...] = ("single_label", "multi_label")


class TextClassifier(nn.Module):
    """Transformer encoder, pooling, dropout and one linear layer.

    Parameters
    ----------
    encoder:
        A Hugging Face base model returning ``last_hidden_state`` of shape ``(b, t, hidden)``.
    num_labels:
        ``k``, the number of classes.
    pooling:
        ``"mean"`` or ``"cls"``.
    dropout:
        Dropout before the linear head (training only).
    """

    def __init__(self, encoder: nn.Module, num_labels: int, *, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(model_config(encoder).hidden_size), num_labels)

    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Pooled embeddings, ``(b, t)`` inputs -> ``(b, hidden)``."""
        hidden = self.encoder(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.pooling)

    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits from pooled embeddings, ``(b, hidden)`` -> ``(b, k)``."""
        return self.head(self.dropout(embeddings))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits, ``(b, t)`` inputs -> ``(b, k)``."""
        return self.classify(self.embed(batch))


def head_logits(head: nn.Linear, embeddings: np.ndarray) -> np.ndarray:
    """Apply a linear head to embeddings in evaluation mode.

    Parameters
    ----------
    head:
        The classifier's linear layer.
    embeddings:
        Shape ``(n, hidden)``.

    Returns
    -------
    np.ndarray
        ``float32`` logits of shape ``(n, k)``.
    """
    with torch.inference_mode():
        weight = head.weight.detach().float().cpu().numpy()
        bias = head.bias.detach().float().cpu().numpy()
    return (np.asarray(embeddings, dtype=np.float32) @ weight.T + bias).astype(np.float32)


def probabilities(logits: np.ndarray, task: str, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits, with temperature scaling.

    Parameters
    ----------
    logits:
        Shape ``(n, k)``.
    task:
        ``"single_label"`` (softmax over classes) or ``"multi_label"`` (independent sigmoids).
    temperature:
        ``T > 0``; logits are divided by it.

    Returns
    -------
    np.ndarray
        ``float64`` array of shape ``(n, k)``; rows sum to 1 for single-label.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if task == "single_label":
        return np.asarray(softmax(scaled, axis=1))
    if task == "multi_label":
        return np.asarray(expit(scaled))
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def decide(logits: np.ndarray, task: str, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Predicted classes from logits.

    Multi-label thresholds are probabilities of the *uncalibrated* model (``sigmoid(logits)``, the
    scale they were tuned on), so a later temperature fit does not move any decision.

    Parameters
    ----------
    logits:
        Shape ``(n, k)``.
    task:
        ``"single_label"`` or ``"multi_label"``.
    thresholds:
        Multi-label only: ``(k,)`` values in ``(0, 1)``; 0.5 each when omitted.

    Returns
    -------
    np.ndarray
        Single-label: ``int64`` class indices ``(n,)``. Multi-label: ``bool`` indicator ``(n, k)``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if task == "single_label":
        return logits.argmax(axis=1).astype(np.int64)
    if task == "multi_label":
        k = logits.shape[1]
        t = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if t.shape != (k,) or np.any(t <= 0) or np.any(t >= 1):
            raise ValueError(f"thresholds must be {k} values in (0, 1)")
        return logits >= logit(t)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def encode_labels(
    labels: Sequence[str] | Sequence[Sequence[str]], label_names: Sequence[str], task: str
) -> np.ndarray:
    """Label names to targets.

    Returns
    -------
    np.ndarray
        Single-label: ``int64`` indices ``(n,)``. Multi-label: ``float32`` multi-hot ``(n, k)``.
    """
    index = {name: i for i, name in enumerate(label_names)}
    if len(index) != len(label_names):
        raise ValueError("label_names contains duplicates")
    if task == "single_label":
        bad = sorted({str(y) for y in labels if not isinstance(y, str) or y not in index})
        if bad:
            raise ValueError(f"single-label labels must be names from label_names; unknown: {bad[:10]}")
        return np.array([index[str(y)] for y in labels], dtype=np.int64)
    if task == "multi_label":
        out = np.zeros((len(labels), len(label_names)), dtype=np.float32)
        for row, ys in enumerate(labels):
            if isinstance(ys, str):
                raise ValueError("multi-label labels must be a list of label-name lists, not strings")
            for y in ys:
                if y not in index:
                    raise ValueError(f"unknown label {y!r} (row {row})")
                out[row, index[y]] = 1.0
        return out
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def decode_labels(
    predicted: np.ndarray, label_names: Sequence[str], task: str
) -> list[str] | list[list[str]]:
    """Inverse of :func:`encode_labels` for the output of :func:`decide`."""
    if task == "single_label":
        return [label_names[int(i)] for i in predicted]
    return [[label_names[int(j)] for j in np.flatnonzero(row)] for row in predicted]


def macro_f1(
    y_true: np.ndarray, logits: np.ndarray, task: str, thresholds: Sequence[float] | None = None
) -> float:
    """Macro-F1 of decisions from logits against targets from :func:`~training.heads.encode_labels`."""
    predicted = decide(logits, task, thresholds)
    if task == "multi_label":
        return float(f1_score(y_true.astype(bool), predicted, average="macro", zero_division=0))
    return float(f1_score(y_true, predicted, average="macro", zero_division=0))
