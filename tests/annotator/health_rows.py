"""Rows for the data-health tests: labeled examples with a conflict group, an outlier and a tiny class, and a
ready version whose ``metrics["health"]`` the real service computed from them (no model trained)."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Max
from django.utils import timezone

from annotator.models import Example, ModelVersion, Project
from annotator.selectors.projects import project_labels
from annotator.services.examples import examples_import
from annotator.services.health import health_for_version

# Two texts identical after normalisation, labeled differently (and a third copy agreeing with one of them);
# a text far from everything; the rest spread over the classes, "neutral" kept tiny.
TEXTS = [
    "The delivery was late again!",
    "the delivery was LATE again",
    "The delivery was late again.",
    "<b>Great</b> value & quick support",
    "Terrible battery, returned it",
    "Fine product, nothing special",
    "Loved the colour and the fit",
    "Broke after two days of use",
    "Works as described",
    "asdf qwerty zxcv 12345 ????",
]
LABELS = ["negative", "positive", "negative", "positive", "negative", "neutral", "positive", "negative", "positive",
          "positive"]


def topic_embeddings(n: int) -> np.ndarray:
    """Texts on one topic (cosine about 0.8 to each other, under the near-duplicate threshold) and the last one
    pointing the other way: far from everything."""
    rng = np.random.default_rng(0)
    topic = rng.normal(size=32)
    embeddings = topic + 0.5 * np.linalg.norm(topic) / np.sqrt(32) * rng.normal(size=(n, 32))
    embeddings[-1] = -topic + rng.normal(size=32)
    return embeddings


def health_examples(project: Project, importer: Any, *, prefix: str = "h") -> list[Example]:
    rows = [{"text": text, "external_id": f"{prefix}-{i}", "label": label}
            for i, (text, label) in enumerate(zip(TEXTS, LABELS, strict=True))]
    result = examples_import(project=project, user=importer, rows=rows)
    by_id = Example.objects.in_bulk(result.ids)
    return [by_id[pk] for pk in result.ids]


def health_version(project: Project, examples: list[Example], *, labels: list[Any] | None = None) -> ModelVersion:
    """A ready version whose data health the service computed from ``examples`` (random embeddings: only
    identical texts are near-duplicates; the last example is placed far away)."""
    embeddings = topic_embeddings(len(examples))
    names = project_labels(project)
    probs = np.full((len(examples), len(names)), 0.2)
    probs[:, 0] = 0.6
    health, _suspicious = health_for_version(
        snapshot_example_ids=[e.id for e in examples], texts=[e.text for e in examples],
        labels=labels or LABELS[: len(examples)], embeddings=embeddings, probs=probs, names=names)
    number = (ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
    return ModelVersion.objects.create(project=project, number=number, status=ModelVersion.Status.READY,
                                       mode="frozen", n_train=len(examples), metrics={"health": health},
                                       finished_at=timezone.now())
