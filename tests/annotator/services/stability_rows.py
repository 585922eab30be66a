"""Rows for the stopping-signal tests: examples, ready versions and their scores, written directly as the
train and scoring jobs would write them (no model is trained)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone

from annotator.models import Example, ExampleScore, ModelVersion, Project
from annotator.services.examples import examples_import
from annotator.services.stability import in_stop_set, version_stability_update

LABELS = ["positive", "negative", "neutral"]
STOPPED = ("predictions stopped changing (kappa 0.99 over the last 3 versions): "
           "more labels like these are unlikely to help")
Predict = Callable[[int, Example], list[str]]  # (position, example) -> predicted label names


def pool(project: Project, user: Any, n: int = 400, *, prefix: str = "pool") -> list[Example]:
    """``n`` unlabeled examples, in id order."""
    result = examples_import(project=project, user=user,
                             rows=[{"text": f"Pool text {prefix} {i}", "external_id": f"{prefix}-{i}"} for i in range(n)])
    by_id = Example.objects.in_bulk(result.ids)
    return sorted((by_id[pk] for pk in result.ids), key=lambda e: e.id)


def baseline(position: int, example: Example) -> list[str]:
    return [LABELS[position % len(LABELS)]]


def members(examples: list[Example]) -> list[Example]:
    return [e for e in examples if in_stop_set(e.id)]


def scored_version(project: Project, number: int, examples: list[Example], predict: Predict = baseline, *,
                   status: str = ModelVersion.Status.READY, labeled: list[Example] | None = None) -> ModelVersion:
    """A version that scored ``examples`` unlabeled with ``predict``; ``labeled`` get noise scores (with a
    label quality) predicting something else entirely."""
    version = ModelVersion.objects.create(project=project, number=number, status=status, mode="frozen",
                                          n_train=100 + number, finished_at=timezone.now())
    rows = [ExampleScore(example=e, model_version=version, probs=[0.6, 0.3, 0.1], predicted=predict(i, e),
                         confidence=0.6, entropy=0.8, margin=0.3) for i, e in enumerate(examples)]
    rows += [ExampleScore(example=e, model_version=version, probs=[0.1, 0.1, 0.8], predicted=[LABELS[number % 3]],
                          confidence=0.8, entropy=0.5, margin=0.7, label_quality=0.9, is_issue=False)
             for e in labeled or []]
    ExampleScore.objects.bulk_create(rows)
    return version


def stabilized(project: Project, user: Any, n_versions: int = 4) -> list[ModelVersion]:
    """``n_versions`` versions with identical predictions, each with its stopping signal computed in turn
    (as each rebuild would): from v4 on, the signal says stopped."""
    examples = pool(project, user, 400)
    versions = [scored_version(project, n, examples) for n in range(1, n_versions + 1)]
    for version in versions:
        version_stability_update(version=version)
    return versions
