"""Webhook deliveries sent by the real Celery worker to a real HTTP receiver on 127.0.0.1 (the worker runs with
WEBHOOK_ALLOW_PRIVATE=1, 1 s timeouts, backoff base 0.3 s and 5 attempts: tests/annotator/loop/conftest.py).

A delivery arrives signed (checked with the verify function of docs/webhooks.md); a receiver that answers 500
or times out is tried again with growing gaps and the delivery ends ``failed`` after 5 attempts, logged; a
Retry-After is honoured; a 410 is not tried again.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from annotator.models import ModelVersion, WebhookDelivery
from tests.annotator.loop.polling import wait_until
from tests.annotator.webhook_receiver import Receiver, Reply, documented_verify

pytestmark = pytest.mark.django_db(transaction=True)

BASE = 0.3  # WEBHOOK_RETRY_BASE_SECONDS of the worker


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True  # this process saves the endpoint; the worker has its own setting


def _endpoint(client: Any, project_id: int, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = client.post(f"/api/v1/projects/{project_id}/webhooks/",
                           {"url": url, "events": events or ["job.failed"]}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _ping(client: Any, project_id: int, endpoint_id: int) -> int:
    response = client.post(f"/api/v1/projects/{project_id}/webhooks/{endpoint_id}/test/")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _ended(delivery_id: int, worker: Any, timeout: float = 60) -> WebhookDelivery:
    return wait_until(lambda: WebhookDelivery.objects.filter(pk=delivery_id).exclude(status="pending").first(),
                      timeout=timeout, what=f"delivery {delivery_id} to end", diagnostics=worker.log_tail)


def test_a_ping_arrives_signed_and_the_signature_verifies(worker, loop_project, as_admin, allow_private):
    project = loop_project(labels=["a", "b"])
    with Receiver() as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        delivery = _ended(_ping(as_admin, project.id, endpoint["id"]), worker)

    assert delivery.status == "delivered" and delivery.attempts == 1
    assert delivery.last_response_code == 200 and delivery.delivered_at is not None
    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["id"] == str(delivery.uuid) == request.headers["X-Relabel-Delivery"]
    assert body["event"] == "ping" == request.headers["X-Relabel-Event"]
    assert body["project"] == {"id": project.id, "name": project.name}
    assert set(body) == {"id", "event", "created_at", "project", "data"}
    verify = documented_verify()
    timestamp = int(request.headers["X-Relabel-Timestamp"])
    assert verify(endpoint["secret"], request.headers, request.body, now=timestamp)
    # A replay later than the tolerance, an altered body, a changed timestamp or another secret all fail
    assert not verify(endpoint["secret"], request.headers, request.body, now=timestamp + 301)
    assert not verify(endpoint["secret"], request.headers, request.body.replace(b"ping", b"pong"), now=timestamp)
    moved = {**dict(request.headers.items()), "X-Relabel-Timestamp": str(timestamp + 60)}
    assert not verify(endpoint["secret"], moved, request.body, now=timestamp + 60)
    assert not verify("whsec_other", request.headers, request.body, now=timestamp)


def _gaps(receiver: Receiver) -> list[float]:
    times = [r.at for r in receiver.requests]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_a_target_that_answers_500_is_retried_with_backoff_then_failed(worker, loop_project, as_admin,
                                                                        allow_private):
    project = loop_project(labels=["a", "b"])
    with Receiver([Reply(500, body=b"database down")]) as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        delivery = _ended(_ping(as_admin, project.id, endpoint["id"]), worker)

    assert delivery.status == "failed" and delivery.attempts == 5
    assert delivery.last_response_code == 500
    assert delivery.last_error.startswith("gave up after 5 attempts; last: HTTP 500: database down")
    assert len(receiver.requests) == 5
    gaps = _gaps(receiver)
    # 0.3, 0.6, 1.2, 2.4 s: each wait at least its backoff, and each longer than the one before
    assert all(gap >= BASE * 2 ** i * 0.9 for i, gap in enumerate(gaps)), gaps
    assert gaps == sorted(gaps), gaps
    # The same delivery id every time; each attempt signed afresh
    assert len({r.headers["X-Relabel-Delivery"] for r in receiver.requests}) == 1
    assert [r.headers["X-Relabel-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4", "5"]
    log = as_admin.get(f"/api/v1/projects/{project.id}/webhooks/{endpoint['id']}/deliveries/?status=failed")
    assert [row["attempts"] for row in log.json()["results"]] == [5]


def test_a_target_that_times_out_is_retried_then_failed(worker, loop_project, as_admin, allow_private):
    project = loop_project(labels=["a", "b"])
    with Receiver([Reply(200, delay=2.5)]) as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        delivery = _ended(_ping(as_admin, project.id, endpoint["id"]), worker, timeout=90)

    assert delivery.status == "failed" and delivery.attempts == 5
    assert delivery.last_response_code is None
    assert "read timeout" in delivery.last_error
    assert len(receiver.requests) == 5
    assert 900 <= delivery.duration_ms < 2400  # gave up at the 1 s read timeout, not at the answer


def test_retry_after_is_honoured(worker, loop_project, as_admin, allow_private):
    project = loop_project(labels=["a", "b"])
    with Receiver([Reply(503, headers={"Retry-After": "2"}), Reply(204)]) as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        delivery = _ended(_ping(as_admin, project.id, endpoint["id"]), worker)

    assert delivery.status == "delivered" and delivery.attempts == 2
    [gap] = _gaps(receiver)
    assert gap >= 1.9, gap  # the backoff alone would have waited 0.3 s


def test_a_410_is_not_retried(worker, loop_project, as_admin, allow_private):
    project = loop_project(labels=["a", "b"])
    with Receiver([Reply(410, body=b"gone"), Reply(200)]) as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        delivery = _ended(_ping(as_admin, project.id, endpoint["id"]), worker)
        time.sleep(1.5)  # longer than a retry would wait (0.3 s): a second request would have come by now

    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_response_code == 410 and delivery.last_error == "HTTP 410: gone"
    assert len(receiver.requests) == 1


def test_a_promotion_through_the_api_reaches_the_receiver(worker, loop_project, as_admin, allow_private):
    project = loop_project(labels=["a", "b"])
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY,
                                          mode="frozen")
    with Receiver() as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url, ["version.promoted"])
        assert as_admin.post(f"/api/v1/models/{version.id}/promote/").status_code == 200
        delivery = _ended(WebhookDelivery.objects.get(endpoint_id=endpoint["id"]).pk, worker)

    assert delivery.status == "delivered"
    [request] = receiver.requests
    body = json.loads(request.body)
    assert request.headers["X-Relabel-Event"] == body["event"] == "version.promoted"
    assert body["data"]["model_version"]["number"] == 1 and body["data"]["replaced_version"] is None
    assert documented_verify()(endpoint["secret"], request.headers, request.body)


def test_a_delivery_whose_task_was_lost_is_sent_by_the_sweep(worker, loop_project, as_admin, allow_private):
    # Given a pending delivery long past due whose task never reached the broker (written directly: no send)
    project = loop_project(labels=["a", "b"])
    with Receiver() as receiver:
        endpoint = _endpoint(as_admin, project.id, receiver.url)
        lost = WebhookDelivery.objects.create(
            endpoint_id=endpoint["id"], event="job.failed", payload={"id": "x", "event": "job.failed", "data": {}},
            next_attempt_at=timezone.now() - timedelta(minutes=5))

        # When the beat's sweep runs (every second in the tests), the delivery is sent
        delivery = _ended(lost.pk, worker)

    assert delivery.status == "delivered" and delivery.attempts == 1
    assert len(receiver.requests) == 1
