"""The train job's noise stage: several views mixed by out-of-fold log loss, recorded in the version metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from annotator.services.snapshot import Snapshot
from annotator.services.training import _encoder_config, _label_noise
from tests.training.test_cv_views import planted_noise_fixture

NAMES = ["sports", "food", "tech"]


def _snapshot(texts: list[str], labels: np.ndarray, example_ids: list[int] | None = None) -> Snapshot:
    return Snapshot(
        example_ids=example_ids or list(range(1, len(texts) + 1)),
        texts=texts,
        labels=[NAMES[i] for i in labels],
        sources=["seed"] * len(texts),
        max_annotation_id=0,
    )


def test_single_label_noise_mixes_the_views_and_records_them(settings: Any) -> None:
    # Given a CPU worker and labels with 10% planted flips that each view sees only half of
    settings.TRAINING_DEVICE = "cpu"
    texts, embeddings, _, given, flipped = planted_noise_fixture()

    # When the noise stage runs
    metrics, rows = _label_noise(_snapshot(texts, given), embeddings, NAMES, False, encoder=None)

    # Then the metrics say which views were mixed, how well each predicted the labels, and at what cost
    views = metrics["views"]
    assert set(views) == {"frozen_lr", "knn", "tfidf"}, "no fine-tuned folds on a CPU by default"
    assert sum(v["weight"] for v in views.values()) == pytest.approx(1.0)
    assert all(v["weight"] >= 0 and v["log_loss"] > 0 and v["seconds"] >= 0 for v in views.values())
    assert metrics["ensemble"]["log_loss"] < min(v["log_loss"] for v in views.values())
    # and every labeled example has a row, the planted flips flagged first
    assert len(rows) == len(texts)
    quality = np.array([row["label_quality"] for row in rows])
    worst = np.argsort(quality)[: flipped.sum()]
    assert flipped[worst].mean() >= 0.8
    assert all(np.sum(row["probs"]) == pytest.approx(1.0) for row in rows)


@pytest.mark.django_db
def test_fine_tuned_folds_join_under_the_cpu_cap_with_the_projects_preprocessing(
    settings: Any, monkeypatch: pytest.MonkeyPatch, make_project: Any, make_examples: Any, admin: Any
) -> None:
    # Given a project that truncates at 64 tokens, and a CPU worker allowed fine-tuned folds up to 100 labels
    import training.train

    settings.TRAINING_DEVICE = "cpu"
    settings.NOISE_FINETUNE_CPU_MAX_EXAMPLES = 100
    project = make_project(admin, labels=NAMES, settings={"max_length": 64})
    texts, embeddings, _, given, _ = planted_noise_fixture(60)
    examples = make_examples(
        project, admin, [{"text": t, "external_id": f"e{i}"} for i, t in enumerate(texts)]
    )
    configs = []

    class Prior:
        def __init__(self, labels: list[str]) -> None:
            self.probs = np.array([labels.count(name) + 1.0 for name in NAMES]) / (len(labels) + 3.0)

        def predict_proba(self, batch: list[str]) -> np.ndarray:
            return np.tile(self.probs, (len(batch), 1))

    def fake_train(train_texts: list[str], train_labels: list[str], names: list[str], **kwargs: Any) -> Prior:
        configs.append(kwargs["config"])
        return Prior(train_labels)

    monkeypatch.setattr(training.train, "train_classifier", fake_train)

    # When the noise stage runs
    metrics, _ = _label_noise(_snapshot(texts, given, [e.id for e in examples]), embeddings, NAMES, False,
                              encoder=_encoder_config(project))

    # Then fine-tuned folds are a fourth view, trained with the project's preprocessing on the worker's device
    assert set(metrics["views"]) == {"frozen_lr", "knn", "tfidf", "finetuned"}
    assert len(configs) == 5
    assert all(c.encoder.max_length == 64 and c.device == "cpu" and c.mode == "full" for c in configs)
    # and a view that knows only the class sizes earns little weight
    assert metrics["views"]["finetuned"]["weight"] < 0.2
