"""Train a text classifier: frozen encoder + head, gradual unfreezing, full fine-tuning or LoRA.

All modes produce the same :class:`~training.heads.TextClassifier` (encoder, pooling, dropout 0.1,
linear head), so model versions look alike whatever the mode. Fine-tuning follows current practice
for BERT-family encoders: AdamW with parameter groups (no weight decay on biases and LayerNorm
weights), a higher learning rate on the head, linear warm-up over ~10% of the steps then linear
decay to 0 (a fresh schedule per unfreezing phase), gradient accumulation and clipping, early stopping
on validation macro-F1 (validation loss breaks ties) with the best epoch's weights restored.

This module is the entry point: :func:`train_classifier`, :func:`train_seeds` and :func:`calibrate`, and it
re-exports the names callers use from the modules that do the work:

- :mod:`training.modes` and :mod:`training.train_config`: the modes and :class:`TrainConfig`;
- :mod:`training.run_state`: the state one run carries through its loops, progress and cancellation;
- :mod:`training.optimizer`: phases, parameter groups, weight-decay rules and schedules;
- :mod:`training.frozen`: the frozen-encoder head (and the cross-fit heads);
- :mod:`training.finetune`: the fine-tuning loop with its LP-FT probe;
- :mod:`training.trained_model`: :class:`TrainedModel`, what a run returns.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_curve

from training.calibration import CalibrationReport, calibration_report, thresholds_for_logits
from training.data import stratified_split
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder
from training.finetune import train_finetune
from training.frozen import MIN_PER_HEAD_FOLD, crossfit_folds, train_frozen
from training.heads import TASKS, TextClassifier, decide, encode_labels, head_logits, macro_f1, probabilities
from training.modes import FINE_TUNE_MODES, MODES
from training.run_state import (
    CancelCheck,
    ProgressCallback,
    RunState,
    Tracker,
    TrainingCancelled,
    TrainingLog,
)
from training.train_config import TrainConfig
from training.trained_model import TrainedModel

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "training.train needs PyTorch and transformers (pip install torch transformers)."
    ) from exc

__all__ = [
    "FINE_TUNE_MODES",
    "MIN_PER_HEAD_FOLD",
    "MODES",
    "CancelCheck",
    "ProgressCallback",
    "SeedRuns",
    "TrainConfig",
    "TrainedModel",
    "TrainingCancelled",
    "calibrate",
    "crossfit_folds",
    "seed_everything",
    "train_classifier",
    "train_seeds",
    "tune_thresholds",
]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, *, default: float = 0.5) -> list[float]:
    """Per-class thresholds maximizing each class's F1 on validation data (multi-label).

    Parameters
    ----------
    y_true:
        ``(n, k)`` multi-hot targets.
    probs:
        ``(n, k)`` probabilities; :func:`calibrate` passes the calibrated ones serving reports.
    default:
        Threshold of a class without positive validation examples.

    Returns
    -------
    list[float]
        ``k`` thresholds in ``(0, 1)``; a class is predicted when its probability is ``>=`` it.
    """
    thresholds: list[float] = []
    for j in range(y_true.shape[1]):
        positives = y_true[:, j] > 0.5
        if not positives.any() or positives.all():
            thresholds.append(default)
            continue
        precision, recall, cut = precision_recall_curve(positives, probs[:, j])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = float(cut[int(np.argmax(f1))])
        thresholds.append(float(np.clip(best, 1e-4, 1 - 1e-4)))
    return thresholds


def calibrate(
    model: TrainedModel, logits: np.ndarray, labels: Sequence[str] | Sequence[Sequence[str]]
) -> tuple[CalibrationReport, list[float] | None]:
    """Fit the model's temperature on held-out logits, then tune multi-label thresholds on the calibrated
    probabilities (the ones serving reports), both on the same held-out rows.

    Parameters
    ----------
    model:
        The trained model; its ``temperature`` and (multi-label) ``thresholds`` are set in place.
    logits:
        ``(n, k)`` logits of held-out examples the model did not train on (the fit split).
    labels:
        Their ``n`` labels (names, or lists of names for multi-label).

    Returns
    -------
    report, calibrated_thresholds
        The temperature fit (:class:`~training.calibration.CalibrationReport` on these rows: its "after" is
        optimistic, measure on other data) and, for multi-label, the ``k`` thresholds on calibrated
        probabilities (``model.thresholds`` holds the same decisions on ``sigmoid(logits)``, see
        :func:`~training.calibration.thresholds_for_logits`); ``None`` for single-label.
    """
    multi = model.task == "multi_label"
    y = encode_labels(labels, model.label_names, model.task)
    report = calibration_report(logits, y.astype(np.int64), multi_label=multi)
    model.temperature = float(report.temperature)
    if not multi:
        return report, None
    calibrated = probabilities(logits, model.task, model.temperature)
    tuned = _between_scores(tune_thresholds(y, calibrated), calibrated)
    model.thresholds = thresholds_for_logits(tuned, model.temperature)
    return report, tuned


def _between_scores(thresholds: Sequence[float], probs: np.ndarray) -> list[float]:
    """Move each threshold from the score it was cut at to halfway to the next lower score: the same decisions
    on these rows, and no held-out probability sits exactly on a boundary that rounding could flip."""
    out = []
    for j, t in enumerate(thresholds):
        below = probs[:, j][probs[:, j] < t]
        out.append(float((t + below.max()) / 2) if below.size else float(t))
    return out


def _val_metrics(
    y: np.ndarray, logits: np.ndarray, task: str, thresholds: Sequence[float] | None
) -> dict[str, float]:
    predicted = decide(logits, task, thresholds)
    metrics = {"macro_f1": macro_f1(y, logits, task, thresholds), "n_val": float(len(y))}
    if task == "multi_label":
        metrics["macro_f1_at_0.5"] = macro_f1(y, logits, task, None)
        metrics["subset_accuracy"] = float(accuracy_score(y.astype(bool), predicted))
    else:
        metrics["accuracy"] = float(accuracy_score(y, predicted))
    return metrics


def _split_validation(
    texts: Sequence[str], labels: Sequence[Any], fraction: float, seed: int
) -> tuple[list[str], list[Any], list[str], list[Any], str]:
    rest, held = stratified_split(labels, fraction, seed=seed)
    if len(held) == 0:
        return list(texts), list(labels), list(texts), list(labels), "train"
    return (
        [texts[i] for i in rest],
        [labels[i] for i in rest],
        [texts[i] for i in held],
        [labels[i] for i in held],
        "split",
    )


def train_classifier(
    train_texts: Sequence[str],
    train_labels: Sequence[str] | Sequence[Sequence[str]],
    label_names: Sequence[str],
    *,
    task: str = "single_label",
    config: TrainConfig | None = None,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[str] | Sequence[Sequence[str]] | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    cache: EmbeddingCache | None = None,
) -> TrainedModel:
    """Train a classifier on labeled texts.

    Parameters
    ----------
    train_texts:
        ``n`` texts.
    train_labels:
        ``n`` label names (single-label) or ``n`` lists of label names (multi-label).
    label_names:
        The ``k`` classes, in the column order of every output.
    task:
        ``"single_label"`` (softmax + cross-entropy) or ``"multi_label"`` (sigmoid + BCE, per-class
        thresholds tuned on validation data).
    config:
        Hyper-parameters; :class:`TrainConfig` defaults when omitted.
    val_texts, val_labels:
        Validation data for early stopping and thresholds; when omitted, a stratified
        ``config.val_fraction`` of the training data is held out.
    progress:
        ``progress(fraction, stage, message)`` with a monotone fraction in ``[0, 1]``.
    should_cancel:
        Polled between batches; when it returns True, :class:`TrainingCancelled` is raised.
    cache:
        Embedding cache used by the frozen mode (a retrain embeds only new texts).

    Returns
    -------
    TrainedModel
        The best epoch's model with its training record.
    """
    config = config if config is not None else TrainConfig()
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if len(train_texts) != len(train_labels):
        raise ValueError(f"{len(train_texts)} texts but {len(train_labels)} labels")
    if len(train_texts) == 0:
        raise ValueError("no training examples")
    if (val_texts is None) != (val_labels is None):
        raise ValueError("give both val_texts and val_labels, or neither")
    label_names = list(label_names)
    started = time.perf_counter()
    tracker = Tracker(progress, should_cancel)
    tracker.report(0.0, "preparing", "loading the encoder")
    seed_everything(config.seed)

    n_labeled = len(train_texts) + (len(val_texts) if val_texts is not None else 0)
    mode = config.resolve_mode(n_labeled)
    if val_texts is None or val_labels is None:
        train_texts, train_labels, val_texts, val_labels, val_source = _split_validation(
            train_texts, train_labels, config.val_fraction, config.seed
        )
    else:
        val_source = "given"
        if len(val_texts) != len(val_labels) or len(val_texts) == 0:
            raise ValueError("val_texts and val_labels must be non-empty and of equal length")
    y_train = encode_labels(train_labels, label_names, task)
    y_val = encode_labels(val_labels, label_names, task)

    device = config.resolve_device()
    encoder = Encoder(config.encoder)
    torch.manual_seed(config.seed)  # the head's initial weights
    model = TextClassifier(
        encoder.model, len(label_names), pooling=config.encoder.pooling, dropout=config.dropout
    )
    run = RunState(
        model=model, encoder=encoder, train_texts=train_texts, y_train=y_train, val_texts=val_texts,
        y_val=y_val, task=task, mode=mode, config=config, tracker=tracker, cache=cache, log=TrainingLog(),
    )  # fmt: skip
    if mode == "frozen":
        model.eval()
        encoder.model.to(device)  # the head trains on the CPU over the embeddings
        train_frozen(run)
    else:
        model.to(device)
        train_finetune(run)
    for param in model.parameters():
        param.requires_grad_(False)

    tracker.report(0.95, "evaluating", "validation metrics of the kept weights")
    val_logits = head_logits(model.head, encoder.embed(val_texts, batch_size=config.eval_batch_size))
    model.to("cpu")  # encoder.model is model.encoder: artifacts and serving get CPU weights
    thresholds = None
    if task == "multi_label":
        thresholds = tune_thresholds(y_val, probabilities(val_logits, task))
    trained = TrainedModel(
        encoder=encoder,
        classifier=model,
        label_names=label_names,
        task=task,
        mode=mode,
        config=config,
        thresholds=thresholds,
        best_epoch=int(run.log.best_epoch),
        val_metrics=_val_metrics(y_val, val_logits, task, thresholds),
        step_log=run.log.steps,
        epoch_log=run.log.epochs,
        optimizer_groups=run.log.optimizer_groups,
        trainable_parameters=sorted(run.log.trainable),
        val_source=val_source,
        seconds=time.perf_counter() - started,
    )
    tracker.report(1.0, "done", f"{mode}: val macro-F1 {trained.val_metrics['macro_f1']:.3f}")
    return trained


@dataclass
class SeedRuns:
    """Results of training once per seed.

    Attributes
    ----------
    seeds:
        The seeds, in order.
    macro_f1:
        Per seed: macro-F1 on the evaluation set if one was given, else on validation data.
    mean, std:
        Mean and sample standard deviation (``ddof=1``; 0 for a single seed) of ``macro_f1``.
    seconds:
        Per seed training wall time.
    mode:
        Mode used (``"auto"`` resolved).
    models:
        The trained models when ``keep_models`` was set, else empty.
    """

    seeds: list[int]
    macro_f1: list[float]
    mean: float
    std: float
    seconds: list[float]
    mode: str
    models: list[TrainedModel] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "models"}


def train_seeds(
    train_texts: Sequence[str],
    train_labels: Sequence[str] | Sequence[Sequence[str]],
    label_names: Sequence[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    task: str = "single_label",
    config: TrainConfig | None = None,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[str] | Sequence[Sequence[str]] | None = None,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence[str] | Sequence[Sequence[str]] | None = None,
    cache: EmbeddingCache | None = None,
    keep_models: bool = False,
    should_cancel: CancelCheck | None = None,
) -> SeedRuns:
    """Train once per seed and report macro-F1 mean and standard deviation.

    Parameters are those of :func:`train_classifier`; ``eval_texts``/``eval_labels`` (optional) is
    a held-out set scored with every seed's model. A frozen-mode run without a ``cache`` uses a
    temporary one, so the encoder embeds each text once across seeds.

    Returns
    -------
    SeedRuns
        Per-seed scores, mean and std.
    """
    config = config if config is not None else TrainConfig()
    label_names = list(label_names)
    with tempfile.TemporaryDirectory(prefix="seed-cache-") as tmp:
        n_labeled = len(train_texts) + (len(val_texts) if val_texts is not None else 0)
        if cache is None and config.resolve_mode(n_labeled) == "frozen":
            cache = EmbeddingCache(Path(tmp) / "embeddings.sqlite3")
        scores: list[float] = []
        seconds: list[float] = []
        models: list[TrainedModel] = []
        mode = ""
        for seed in seeds:
            model = train_classifier(
                train_texts,
                train_labels,
                label_names,
                task=task,
                config=replace(config, seed=int(seed)),
                val_texts=val_texts,
                val_labels=val_labels,
                should_cancel=should_cancel,
                cache=cache,
            )
            mode = model.mode
            if eval_texts is not None and eval_labels is not None:
                y_eval = encode_labels(eval_labels, label_names, task)
                scores.append(macro_f1(y_eval, model.predict_logits(eval_texts), task, model.thresholds))
            else:
                scores.append(model.val_metrics["macro_f1"])
            seconds.append(model.seconds)
            if keep_models:
                models.append(model)
            del model
    arr = np.array(scores)
    return SeedRuns(
        seeds=[int(s) for s in seeds],
        macro_f1=scores,
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        seconds=seconds,
        mode=mode,
        models=models,
    )
