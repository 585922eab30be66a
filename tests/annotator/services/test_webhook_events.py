"""Which changes send which webhook events: a delivery per listening endpoint, written in the transaction of
the change and sent to the broker only once it commits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import transaction

from annotator import dispatch
from annotator.models import (
    DriftWindow,
    Job,
    ModelVersion,
    Project,
    QueueItem,
    WebhookDelivery,
    WebhookEndpoint,
)
from annotator.services import production
from annotator.services.drift_reference import ChosenReference
from annotator.services.jobs import job_fail, job_finish
from annotator.services.models import model_promote
from annotator.services.projects import project_update_settings
from annotator.services.queue import queue_add, queue_lease
from training.drift_reference import build_drift_reference

NAMES = ["positive", "negative", "neutral"]


def _endpoint(project: Project, *events: str, active: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(project=project, url="https://hooks.example.test/in", secret="s",
                                          events=list(events), active=active)


def _sent(callbacks: list[Any], monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple]]:
    """Run the on-commit callbacks with the broker send recorded instead of made."""
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(dispatch, "send", lambda name, *args, **_: sent.append((name, args)) or True)
    for callback in callbacks:
        callback()
    return sent


def test_a_promotion_tells_the_endpoints_that_listen(project, django_capture_on_commit_callbacks, monkeypatch):
    listening = _endpoint(project, "version.promoted")
    _endpoint(project, "job.failed")  # another event
    _endpoint(project, "version.promoted", active=False)
    old = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    model_promote(version=old, reason="first version")
    WebhookDelivery.objects.all().delete()
    new = ModelVersion.objects.create(project=project, number=2, status=ModelVersion.Status.READY, mode="frozen",
                                      metrics={"macro_f1": 0.81})

    with django_capture_on_commit_callbacks() as callbacks:
        model_promote(version=new, reason="promoted by alice")

    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint == listening and delivery.event == "version.promoted"
    body = delivery.payload
    assert body["id"] == str(delivery.uuid) and body["event"] == "version.promoted"
    assert body["project"] == {"id": project.id, "name": project.name}
    assert body["data"]["model_version"]["number"] == 2 and body["data"]["model_version"]["macro_f1"] == 0.81
    assert body["data"]["replaced_version"] == 1 and body["data"]["rollback"] is False
    assert body["data"]["reason"] == "promoted by alice"
    assert _sent(callbacks, monkeypatch) == [(dispatch.DELIVER_WEBHOOK, (delivery.pk,))]


def test_a_rollback_says_so(project):
    _endpoint(project, "version.promoted")
    v1 = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    v2 = ModelVersion.objects.create(project=project, number=2, status=ModelVersion.Status.READY)
    model_promote(version=v2, reason="first version")

    model_promote(version=v1, reason="rollback")

    newest = WebhookDelivery.objects.order_by("-id").first()
    assert newest.payload["data"]["rollback"] is True and newest.payload["data"]["replaced_version"] == 2


def test_an_event_of_a_rolled_back_change_is_never_sent(project, django_capture_on_commit_callbacks):
    _endpoint(project, "version.promoted")
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        model_promote(version=version, reason="first version")
        transaction.set_rollback(True)

    assert not WebhookDelivery.objects.exists()
    assert callbacks == []


def test_a_train_job_that_succeeds_or_fails_sends_its_event(project):
    finished = _endpoint(project, "job.finished")
    failed = _endpoint(project, "job.failed")
    good = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING)
    job_finish(good.pk, Job.Status.SUCCEEDED, result={"model_version": 3, "promoted": True},
               message="v3 trained and promoted")
    good.delete()  # one active training job at a time
    bad = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING)

    job_fail(bad.pk, RuntimeError("out of memory"))

    [ok] = WebhookDelivery.objects.filter(endpoint=finished)
    assert ok.event == "job.finished"
    assert ok.payload["data"]["job"]["status"] == "succeeded"
    assert ok.payload["data"]["model_version"] == 3 and ok.payload["data"]["promoted"] is True
    [ko] = WebhookDelivery.objects.filter(endpoint=failed)
    assert ko.event == "job.failed"
    assert ko.payload["data"]["job"]["id"] == bad.pk
    assert "out of memory" in ko.payload["data"]["job"]["message"]


def test_steps_of_a_job_cancelled_jobs_and_a_second_finish_send_nothing(project):
    _endpoint(project, "job.finished", "job.failed")
    train = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING)
    score = Job.objects.create(project=project, kind=Job.Kind.SCORE, parent=train, status=Job.Status.RUNNING)

    job_finish(score.pk, Job.Status.SUCCEEDED)
    job_finish(train.pk, Job.Status.CANCELLED)
    job_finish(train.pk, Job.Status.FAILED)  # already finished: nothing changes

    assert not WebhookDelivery.objects.exists()


def test_a_drift_window_that_alerts_sends_drift_alert(project, admin, monkeypatch):
    # Given a serving version whose pool looks nothing like the production traffic that arrives
    hook = _endpoint(project, "drift.alert")
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    Project.objects.filter(pk=project.pk).update(serving_version=version)
    project_update_settings(project=project, settings={"drift_window_size": 20})
    rng = np.random.default_rng(0)
    reference = build_drift_reference(probs=rng.dirichlet(np.ones(3), size=200), label_names=NAMES,
                                      embeddings=rng.normal(size=(200, 8)))

    class Prediction:
        def __init__(self, n: int) -> None:
            self.probs = np.tile([0.34, 0.33, 0.33], (n, 1))
            self.embeddings = np.full((n, 8), 25.0)
            self.token_stats = None
            self.labels = ["positive"] * n

    class Predictor:
        label_names = NAMES

        def predict(self, texts: list[str], **_: Any) -> Prediction:
            return Prediction(len(texts))

    monkeypatch.setattr(production, "predictor_for", lambda _version: Predictor())
    monkeypatch.setattr(production, "drift_reference_for",
                        lambda version: ChosenReference(reference, {"kind": "pool", "summary": "test"}))
    from annotator.services.examples import examples_import

    examples_import(project=project, user=admin, default_source="production",
                    rows=[{"external_id": f"live{i}", "text": f"live sample {i}"} for i in range(20)])

    # When the drift check measures the window
    [window] = production.drift_check(project.id)

    # Then it alerted, and the endpoint is told with the window's figures and reasons
    assert window.alert, window.reasons
    [delivery] = WebhookDelivery.objects.filter(endpoint=hook)
    data = delivery.payload["data"]
    assert delivery.event == "drift.alert"
    assert data["window"]["id"] == window.pk and data["window"]["n"] == 20
    assert data["reasons"] == window.reasons and data["model_version"] == 1
    assert DriftWindow.objects.count() == 1


def _queue(project: Project, admin: Any, make_examples: Any, n: int, prefix: str) -> None:
    examples = make_examples(project, admin, [{"text": f"{prefix} {i}", "external_id": f"{prefix}{i}"}
                                              for i in range(n)])
    queue_add(project=project, examples=examples, reason="uncertain", priority=1.0)


def test_the_queue_running_low_is_told_once_per_crossing(project, admin, reviewer, annotator, make_examples):
    hook = _endpoint(project, "queue.low")
    project_update_settings(project=project, settings={"webhook_queue_low": 5})
    _queue(project, admin, make_examples, 8, "first")

    # 8 -> 4 pending: below 5, told once
    queue_lease(project=project, user=annotator, n=4)
    assert WebhookDelivery.objects.filter(endpoint=hook).count() == 1
    first = WebhookDelivery.objects.get(endpoint=hook)
    assert first.event == "queue.low"
    assert first.payload["data"] == {"pending": 4, "leased": 4, "threshold": 5}

    # further leases while still low: nothing more
    queue_lease(project=project, user=admin, n=2)
    queue_lease(project=project, user=admin, n=2)
    assert WebhookDelivery.objects.filter(endpoint=hook).count() == 1

    # the queue fills up again (a rebuild checks it), then falls below again: told a second time
    _queue(project, admin, make_examples, 10, "second")
    project.refresh_from_db()
    from annotator.services.webhooks import queue_low_check

    assert queue_low_check(project=project) is False
    project.refresh_from_db()
    assert project.queue_low_at is None
    queue_lease(project=project, user=reviewer, n=8)
    assert QueueItem.objects.filter(project=project, status="pending").count() < 5
    assert WebhookDelivery.objects.filter(endpoint=hook).count() == 2


def test_queue_low_at_zero_is_off(project, admin, annotator, make_examples):
    hook = _endpoint(project, "queue.low")
    project_update_settings(project=project, settings={"webhook_queue_low": 0})
    _queue(project, admin, make_examples, 3, "few")

    queue_lease(project=project, user=annotator, n=3)

    assert not WebhookDelivery.objects.filter(endpoint=hook).exists()
    assert QueueItem.objects.filter(status="pending").count() == 0
