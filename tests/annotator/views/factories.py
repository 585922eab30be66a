"""Rows for the page tests. Examples, labels and queue items go through the services; the loop's own
outputs (model versions, scores, jobs, drift windows) are written directly, as its jobs would write them."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from annotator.models import DriftWindow, Example, ExampleScore, Job, ModelVersion, Project, QueueItem
from annotator.services.annotations import annotation_create
from annotator.services.examples import examples_import
from annotator.services.queue import queue_add

LABELS = ["positive", "negative", "neutral"]


def import_examples(project: Project, user: Any, texts: list[str], *, prefix: str = "ex",
                    labels: list[str | None] | None = None) -> list[Example]:
    rows = []
    for i, text in enumerate(texts):
        row: dict[str, Any] = {"text": text, "external_id": f"{prefix}-{i}"}
        if labels and labels[i]:
            row["label"] = labels[i]
        rows.append(row)
    result = examples_import(project=project, user=user, rows=rows)
    by_id = Example.objects.in_bulk(result.ids)
    return [by_id[pk] for pk in result.ids]


def queued_examples(project: Project, user: Any, *, n: int = 5, reason: str = "uncertain",
                    texts: list[str] | None = None) -> list[Example]:
    texts = texts or [f"Queued review number {i}: the delivery was {'late' if i % 2 else 'fine'}." for i in range(n)]
    examples = import_examples(project, user, texts, prefix=f"q{reason}")
    for i, example in enumerate(examples):
        # Descending priority keeps the queue order equal to the import order.
        queue_add(project=project, examples=[example], reason=reason, priority=10.0 - i,
                  explanation=f"the model hesitates between positive and negative (item {i})")
    return examples


def noise_metrics(labels: list[str]) -> dict[str, Any]:
    return {"estimated_noise_rate": 0.12, "n": 40, "n_issues": 3, "method": "test",
            "per_class": [{"label": name, "estimated_noise_rate": 0.05 * (i + 1), "n": 10 + i}
                          for i, name in enumerate(labels)]}


def trained_metrics(labels: list[str], *, f1: float = 0.82, std: float | None = 0.02) -> dict[str, Any]:
    k = len(labels)
    bins = [{"lower": i / 10, "upper": (i + 1) / 10, "count": 5 if i >= 4 else 0,
             "accuracy": (i / 10 + 0.05) if i >= 4 else None, "confidence": (i / 10 + 0.08) if i >= 4 else None}
            for i in range(10)]
    holdout = {
        "n": 40, "macro_f1": f1, "macro_f1_ci": [f1 - 0.06, f1 + 0.05], "accuracy": f1 + 0.03,
        "accuracy_ci": [f1 - 0.03, f1 + 0.08], "ece": 0.04, "ece_ci": [0.02, 0.07], "ece_before": 0.11,
        "ece_before_ci": [0.08, 0.15], "sources": {"import": 32, "random": 8},
        "example_sources": {"import": 30, "production": 10}, "eligible": 200, "n_labeled": 240, "cut": 0.2,
        "rule": holdout_rule(),
        "per_class": [{"label": name, "precision": 0.8, "precision_ci": [0.7, 0.9], "recall": 0.78,
                       "recall_ci": [0.66, 0.88], "f1": 0.79, "f1_ci": [0.7, 0.87], "support": 10} for name in labels],
        "confusion_matrix": [[8 if i == j else 1 for j in range(k)] for i in range(k)],
        "calibration": {"bins_before": bins, "bins_after": bins, "ece_before": 0.11, "ece_after": 0.04},
        "slices": {"source=import": {"n": 30, "macro_f1": f1 - 0.02, "macro_f1_ci": [f1 - 0.1, f1 + 0.04]},
                   "source=production": {"n": 10, "reason": "too few held-out labels to measure"}},
    }
    metrics: dict[str, Any] = {
        "macro_f1": f1, "macro_f1_ci": holdout["macro_f1_ci"], "accuracy": f1 + 0.03, "ece": 0.04,
        "ece_ci": holdout["ece_ci"], "ece_before": 0.11, "ece_before_ci": holdout["ece_before_ci"],
        "temperature": 1.7, "n_train": 120, "n_val": 30, "n_holdout": 40, "mode": "frozen",
        "holdout": holdout, "noise": noise_metrics(labels),
    }
    if std is not None:
        metrics["macro_f1_std"] = std
        metrics["macro_f1_mean"] = f1
    return metrics


def holdout_rule() -> dict[str, Any]:
    from annotator.services.holdout import HOLDOUT_RULE

    return dict(HOLDOUT_RULE)


def model_version(project: Project, number: int, *, n_train: int = 120, f1: float = 0.82, serving: bool = False,
                  comparison: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> ModelVersion:
    version = ModelVersion.objects.create(
        project=project, number=number, status=ModelVersion.Status.READY, mode="frozen", n_train=n_train,
        metrics=metrics if metrics is not None else trained_metrics(LABELS, f1=f1), comparison=comparison or {},
        finished_at=timezone.now(),
    )
    if serving:
        project.serving_version = version
        project.save(update_fields=["serving_version"])
    return version


def noisy_version(project: Project, importer: Any, *, labeler: Any | None = None) -> dict[str, Any]:
    """Six labeled examples; the three with the lowest quality are flagged as issues."""
    texts = [f"Labeled text {i}: {'great value' if i % 2 else 'awful support'}" for i in range(6)]
    given = ["positive", "negative", "positive", "negative", "neutral", "positive"]
    examples = import_examples(project, importer, texts, prefix="lab", labels=given)
    if labeler is not None:
        for example, label in zip(examples[:2], given[:2], strict=True):
            annotation_create(example=example, user=labeler, labels=[label])
    version = model_version(project, 1, serving=True)
    suggested = ["negative", "positive", "neutral", "negative", "neutral", "positive"]
    scores = []
    for i, example in enumerate(examples):
        issue = i < 3
        scores.append(ExampleScore(
            example=example, model_version=version, probs=[0.2, 0.7, 0.1], predicted=[suggested[i]],
            confidence=0.7, entropy=0.5, margin=0.4, label_quality=0.05 + 0.1 * i if issue else 0.9,
            is_issue=issue, suggested_label=suggested[i],
        ))
    ExampleScore.objects.bulk_create(scores)
    return {"version": version, "examples": examples, "issues": examples[:3], "suggested": suggested}


def job(project: Project, *, status: str = Job.Status.RUNNING, progress: float = 0.3, kind: str = Job.Kind.TRAIN) -> Job:
    return Job.objects.create(project=project, kind=kind, status=status, progress=progress, stage="training",
                              message="epoch 2 of 6")


def drift_windows(project: Project, n: int = 6, *, version: ModelVersion | None = None) -> list[DriftWindow]:
    windows = []
    for i in range(n):
        alert = i == n - 2
        windows.append(DriftWindow(
            project=project, model_version=version, sequence=i, n=200,
            class_distribution={"positive": 0.5 - 0.04 * i, "negative": 0.3 + 0.04 * i, "neutral": 0.2},
            class_shift=0.02 + 0.01 * i, mean_confidence=0.85 - 0.03 * i, confidence_shift=0.05 + 0.02 * i,
            embedding_drift=0.001 * (i + 1) ** 2,
            anomalies={"texts_with_unk_share": 0.01 * i, "truncation_rate": 0.02, "malformed_share": 0.0, "alerts": []},
            alert=alert, reasons=["predicted class mix shifted: JS 0.09 (p=0.001)"] if alert else [],
            actions=["routed 10 of the window's 200 samples to the queue (reason drift)"] if alert else [],
            start=timezone.now(), end=timezone.now(),
        ))
    return DriftWindow.objects.bulk_create(windows)


def open_items(project: Project) -> list[QueueItem]:
    return list(QueueItem.objects.filter(project=project, status__in=["pending", "leased"]).order_by("-priority"))
