"""A project whose examples have every kind of history, and what a round trip must keep of it."""

from __future__ import annotations

import io
from typing import Any

import pytest

from annotator.models import Annotation, Example


@pytest.fixture
def rich_project(project, admin, reviewer, make_examples, annotate) -> Any:
    """Imports, labels by two people, relabels, a review decision with a note, unlabeled and production rows,
    metadata of several shapes, texts with markup, quotes and non-ASCII characters."""
    imported, labeled, reviewed, _unlabeled, _production = make_examples(
        project,
        admin,
        [
            {"external_id": "imp", "text": "Loved it", "label": "positive", "source": "seed",
             "metadata": {"stars": 5}},
            {"external_id": "lab", "text": 'Meh, "fine" — ça va', "metadata": {"lang": "fr", "tags": ["a", "b"]}},
            {"external_id": "rev", "text": "<b>Broke</b> on day one", "label": "positive"},
            {"external_id": "none", "text": "No opinion yet", "source": "pool"},
            {"external_id": "prod", "text": "=SUM(A1)", "source": "production",
             "observed_at": "2026-01-02T03:04:05+00:00", "metadata": {"nested": {"deep": [1, {"x": None}]}}},
        ],
    )
    annotate(labeled, admin, "neutral")
    annotate(labeled, reviewer, "negative")
    annotate(labeled, admin, "negative")
    annotate(reviewed, reviewer, "negative", kind="review", note="clearly negative")
    return project


def summary(project: Any) -> dict[str, tuple[Any, ...]]:
    """Per external_id: current labels, text, source, metadata, observed_at, and the (user, kind, labels,
    note) history in order."""
    out = {}
    for example in Example.objects.filter(project=project).prefetch_related("annotations__user"):
        history = [(a.user.username, a.kind, a.labels, a.note) for a in example.annotations.order_by("id")]
        labels = list(example.labels.order_by("position").values_list("name", flat=True))
        out[example.external_id] = (labels, example.text, example.source, example.metadata, example.observed_at,
                                    history)
    return out


def history_counts(project: Any) -> dict[str, int]:
    return {e.external_id: e.annotations.count() for e in Example.objects.filter(project=project)}


def history_times(project: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ext, created_at in (
        Annotation.objects.filter(example__project=project).order_by("id")
        .values_list("example__external_id", "created_at")
    ):
        out.setdefault(ext, []).append(created_at.isoformat())
    return out


def body_bytes(response: Any) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def parquet_table(data: bytes) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


@pytest.fixture
def existing(project: Any, admin: Any, make_examples: Any) -> list[Example]:
    """One example already in the project, so 'nothing written' is checked against a non-empty table."""
    return make_examples(project, admin, [{"external_id": "old-1", "text": "already here", "label": "neutral"}])
