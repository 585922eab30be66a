"""The heavy pages run a fixed number of queries, however many rows they show (no N+1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotator.models import DriftWindow, ExampleScore
from annotator.services.annotations import annotation_create
from tests.annotator.views import factories


def _queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def _grows(client: Any, url: str, add_rows: Callable[[], None]) -> tuple[int, int]:
    before = _queries(client, url)
    add_rows()
    return before, _queries(client, url)


def test_the_noise_report_queries_do_not_grow_with_issues(project, admin, reviewer, page_client):
    noisy = factories.noisy_version(project, admin)
    client = page_client(reviewer)

    def more() -> None:
        examples = factories.import_examples(project, admin, [f"more {i}" for i in range(30)], prefix="more",
                                             labels=["positive"] * 30)
        for example in examples:
            annotation_create(example=example, user=reviewer, labels=["negative"])
        ExampleScore.objects.bulk_create(
            ExampleScore(example=e, model_version=noisy["version"], probs=[0.1, 0.8, 0.1], predicted=["negative"],
                         confidence=0.8, entropy=0.3, margin=0.7, label_quality=0.2, is_issue=True,
                         suggested_label="negative") for e in examples)

    before, after = _grows(client, reverse("review", args=[project.id]), more)
    assert before == after <= 20


def test_the_models_page_queries_do_not_grow_with_versions(project, reviewer, page_client):
    factories.model_version(project, 1, serving=True)
    client = page_client(reviewer)

    def more() -> None:
        for number in range(2, 12):
            factories.model_version(project, number, n_train=100 * number)

    before, after = _grows(client, reverse("models", args=[project.id]), more)
    assert before == after <= 12


def test_the_drift_page_queries_do_not_grow_with_windows(project, reviewer, page_client):
    version = factories.model_version(project, 1, serving=True)
    factories.drift_windows(project, 3, version=version)
    client = page_client(reviewer)

    def more() -> None:
        DriftWindow.objects.bulk_create(
            DriftWindow(project=project, model_version=version, sequence=100 + i, n=200,
                        class_distribution={"positive": 1.0}, alert=True, reasons=["shift"], actions=["routed"])
            for i in range(30))

    before, after = _grows(client, reverse("drift", args=[project.id]), more)
    assert before == after <= 12


def test_the_agreement_page_queries_do_not_grow_with_items(project, admin, reviewer, annotator, page_client):
    client = page_client(reviewer)

    def shared(n: int, prefix: str) -> None:
        for example in factories.import_examples(project, admin, [f"{prefix} {i}" for i in range(n)], prefix=prefix):
            annotation_create(example=example, user=annotator, labels=["positive"])
            annotation_create(example=example, user=reviewer, labels=["negative"])

    shared(2, "few")
    before, after = _grows(client, reverse("agreement", args=[project.id]), lambda: shared(20, "many"))
    assert before == after <= 12


def test_the_annotate_page_and_overview_stay_small(project, admin, reviewer, page_client):
    factories.queued_examples(project, admin, n=30)
    for _ in range(5):
        factories.job(project, status="succeeded", progress=1.0)
    client = page_client(reviewer)

    assert _queries(client, reverse("annotate", args=[project.id])) <= 20
    assert _queries(client, reverse("project-overview", args=[project.id])) <= 20
