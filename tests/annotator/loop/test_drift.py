"""Drift windows of production samples, computed by the real worker after each push: traffic like the
training data raises no alert, an unseen topic does, and its most uncertain samples go to the queue."""

from __future__ import annotations

import pytest

from annotator.models import QueueItem
from tests.annotator.loop.corpus import articles, labeled_rows
from tests.annotator.loop.polling import wait_until
from tests.annotator.loop.steps import import_rows, train
from tests.annotator.openapi import assert_answer_matches_schema

CLASSES = ["business", "politics", "sports"]
WINDOW = 30


def push(client, project_id: int, texts: list[str], prefix: str) -> list[int]:
    rows = [{"text": text, "external_id": f"{prefix}-{i}", "observed_at": f"2026-02-01T10:{i:02d}:00Z"}
            for i, text in enumerate(texts)]
    response = client.post(f"/api/v1/projects/{project_id}/samples/", rows, format="json")
    assert response.status_code == 201, response.content
    assert_answer_matches_schema(response, "POST", "/api/v1/projects/{project_id}/samples/")
    assert response.json()["predictions"] is not None
    return response.json()["ids"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_unseen_topic_raises_a_drift_alert_and_in_distribution_traffic_does_not(worker, loop_project, as_admin):
    # Given a model of three BBC topics (no queue rebuild items, so the queue shows only what drift routes)
    project = loop_project(labels=CLASSES, drift_window_size=WINDOW, queue_size=0)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 20))
    train(as_admin, project.id, diagnostics=worker.log_tail)
    drift_url = f"/api/v1/projects/{project.id}/drift/"

    def windows(n: int) -> list[dict] | None:
        body = as_admin.get(drift_url).json()
        return body["results"] if body["count"] >= n else None

    # When a window of held-out articles of the same topics arrives
    familiar = [text for i in range(60, 70) for text in (articles(label, i, i + 1)[0] for label in CLASSES)]
    familiar_ids = push(as_admin, project.id, familiar, "same")

    # Then its window raises no alert and routes nothing
    [window] = wait_until(lambda: windows(1), timeout=60, what="the first drift window", diagnostics=worker.log_tail)
    assert window["n"] == WINDOW and window["model_version"] == 1
    assert window["alert"] is False and window["reasons"] == [], window
    assert window["start"] == "2026-02-01T10:00:00Z" and window["end"] == "2026-02-01T10:29:00Z"
    assert not QueueItem.objects.filter(project=project, reason=QueueItem.Reason.DRIFT).exists()

    # When a window of technology articles (a topic the model never saw) arrives
    unseen_ids = push(as_admin, project.id, articles("tech", 60, 60 + WINDOW), "tech")

    # Then the new window, listed first, alerts with reasons a person can read
    newest, older = wait_until(lambda: windows(2), timeout=60, what="the second drift window",
                               diagnostics=worker.log_tail)
    assert older["id"] == window["id"]
    assert newest["alert"] is True, newest
    assert newest["reasons"] and all(isinstance(r, str) and len(r) > 20 for r in newest["reasons"])
    assert any("embeddings" in r or "unfamiliar" in r or "confidence" in r or "class mix" in r
               for r in newest["reasons"]), newest["reasons"]

    # and its most uncertain samples are in the queue with reason "drift" (and none of the familiar ones)
    drifted = QueueItem.objects.filter(project=project, reason=QueueItem.Reason.DRIFT)
    routed = set(drifted.values_list("example_id", flat=True))
    assert routed and routed <= set(unseen_ids)
    assert not routed & set(familiar_ids)
    assert all(item.status == QueueItem.Status.PENDING and "drift" in item.explanation for item in drifted)
    assert newest["actions"] and "queue" in newest["actions"][0]
    # and the windows, with every test's statistics and the reference they were compared with, are what
    # /api/schema/ declares
    assert_answer_matches_schema(as_admin.get(drift_url), "GET", "/api/v1/projects/{project_id}/drift/")
    stats = as_admin.get(f"/api/v1/projects/{project.id}/queue/").json()
    assert stats["by_reason"] == {"drift": len(routed)}
