"""Faults the loop must survive: a worker process killed mid-training, and Redis going away."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.test.utils import override_settings
from kombu import pools

from annotator.celery import app
from annotator.models import Annotation, Job, ModelVersion, Project, QueueItem
from annotator.services.queue import queue_add
from tests.annotator.loop.corpus import labeled_rows, unlabeled_rows
from tests.annotator.loop.polling import FINISHED, poll_job, wait_until
from tests.annotator.loop.steps import TRAIN_TIMEOUT, import_rows, start_training, train

CLASSES = ["business", "politics", "sports"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_pool_process_killed_while_training_is_retried_and_nothing_is_lost(worker, loop_project, as_admin):
    # Given a project whose version 1 serves (few, short texts keep full fine-tuning to seconds)
    project = loop_project(labels=CLASSES, max_length=32)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
    train(as_admin, project.id, diagnostics=worker.log_tail)
    serving_before = Project.objects.get(pk=project.id).serving_version_id
    annotations_before = list(Annotation.objects.filter(example__project=project).values_list("id", "labels"))

    # When the worker's pool process is SIGKILLed while a full fine-tuning job trains (its progress is in
    # the training span, 0.05 to 0.55: the new version row exists and the weights are being trained)
    job = start_training(as_admin, project.id, mode="full")
    seen, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail,
                       until=lambda body: body["status"] in FINISHED
                       or (body["status"] == "running" and 0.05 <= body["progress"] < 0.55))
    assert seen["status"] == "running", f"the job ended before it could be killed: {seen}"
    killed = worker.kill_child()

    # Then the worker notices, the task is delivered again to a new pool process, and the job ends
    wait_until(lambda: "SIGKILL" in worker.log_text(), timeout=60, what="the worker to notice the kill",
               diagnostics=worker.log_tail)
    body, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail)
    assert worker.running and killed not in [child.pid for child in worker.children()]
    row = Job.objects.get(pk=job["id"])
    assert body["status"] in {"succeeded", "failed"}, body
    if body["status"] == "succeeded":
        assert row.attempts == 2, "the job should have been run again after the kill"

    # and no label was lost or changed
    assert list(Annotation.objects.filter(example__project=project).values_list("id", "labels")) == annotations_before

    # and the killed attempt's half-made version never serves
    versions = dict(ModelVersion.objects.filter(project=project).values_list("number", "status"))
    assert versions[1] == ModelVersion.Status.READY
    assert ModelVersion.Status.TRAINING not in versions.values(), versions
    assert list(versions.values()).count(ModelVersion.Status.FAILED) >= 1, versions
    serving_now = Project.objects.get(pk=project.id).serving_version_id
    if body["status"] == "succeeded" and body["result"]["promoted"]:
        assert serving_now == body["result"]["model_version_id"]
        assert versions[body["result"]["model_version"]] == ModelVersion.Status.READY
    else:
        assert serving_now == serving_before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_whole_worker_killed_while_training_is_taken_over_by_another(worker, workers, loop_project, as_admin):
    # Given a project whose version 1 serves
    project = loop_project(labels=CLASSES, max_length=32)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
    train(as_admin, project.id, diagnostics=worker.log_tail)
    serving_before = Project.objects.get(pk=project.id).serving_version_id
    annotations_before = Annotation.objects.filter(example__project=project).count()

    # When the whole worker (main process and pool) is SIGKILLed while a job trains, as when its machine dies
    job = start_training(as_admin, project.id, mode="full")
    seen, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail,
                       until=lambda body: body["status"] in FINISHED
                       or (body["status"] == "running" and 0.05 <= body["progress"] < 0.55))
    assert seen["status"] == "running", f"the job ended before it could be killed: {seen}"
    worker.kill()

    # Then another worker sees the job's heartbeat go stale, takes it over, and the job ends
    replacement = workers.shared_worker()
    body, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=replacement.log_tail)
    assert body["status"] in {"succeeded", "failed"}, body
    row = Job.objects.get(pk=job["id"])
    if body["status"] == "succeeded":
        assert row.attempts == 2, "the job should have been run again by the other worker"
    assert Annotation.objects.filter(example__project=project).count() == annotations_before
    versions = dict(ModelVersion.objects.filter(project=project).values_list("number", "status"))
    assert ModelVersion.Status.TRAINING not in versions.values(), versions
    if not (body["status"] == "succeeded" and body["result"]["promoted"]):
        assert Project.objects.get(pk=project.id).serving_version_id == serving_before


# --- Redis down --------------------------------------------------------------------------------------------
@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (already configured from settings) and REDIS_URL at ``url``."""

    def forget_connections() -> None:
        # kombu keeps connection and producer pools per broker URL, globally; the app caches its own.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    app.conf.broker_url = url
    forget_connections()
    try:
        with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url):
            yield
    finally:
        app.conf.broker_url = previous
        forget_connections()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_redis_down_labels_are_accepted_and_training_resumes_when_it_is_back(
    private_worker, private_redis, loop_project, as_admin, as_reviewer, as_annotator,
):
    with celery_broker(private_redis.url):
        # Given a project with labels and one queued item, and Redis stopped
        project = loop_project(labels=CLASSES)
        labeled = labeled_rows(CLASSES, 0, 6)
        unlabeled = unlabeled_rows(CLASSES, 6, 8)
        ids = import_rows(as_admin, project.id, labeled + unlabeled)
        truth = {pk: row["external_id"].split("-")[1] for pk, row in zip(ids, labeled + unlabeled, strict=True)}
        pool = ids[len(labeled):]
        queue_add(project=project, examples=[pool[0]], reason=QueueItem.Reason.UNCERTAIN)
        private_redis.stop()
        assert as_admin.get("/api/v1/health/").json()["broker"] == "down"
        annotations_before = Annotation.objects.filter(example__project=project).count()

        # When a reviewer labels an example and an annotator answers a queue item
        labeled_now = as_reviewer.post(f"/api/v1/examples/{pool[1]}/annotations/", {"label": truth[pool[1]]},
                                       format="json")
        [item] = as_annotator.get(f"/api/v1/projects/{project.id}/queue/next/", {"n": 1}).json()
        answered = as_annotator.post(f"/api/v1/queue/{item['id']}/submit/",
                                     {"label": truth[item["example"]["id"]]}, format="json")
        # and a reviewer asks for training
        response = as_admin.post(f"/api/v1/projects/{project.id}/train/", {}, format="json")

        # Then both answers are stored and the job waits, queued, for the broker
        assert labeled_now.status_code == 201, labeled_now.content
        assert answered.status_code == 201, answered.content
        assert Annotation.objects.filter(example__project=project).count() == annotations_before + 2
        assert response.status_code == 202, response.content
        job = Job.objects.get(pk=response.json()["job"]["id"])
        assert job.status == Job.Status.QUEUED and job.dispatched_at is None
        assert "waiting for the broker" in job.message

        # When Redis is back, the worker's sweeper sends the job and it runs to success
        private_redis.start()
        body, progress = poll_job(as_admin, job.id, timeout=TRAIN_TIMEOUT, diagnostics=private_worker.log_tail)
        assert body["status"] == "succeeded", body
        assert body["result"]["model_version"] == 1
        assert Job.objects.get(pk=job.id).dispatched_at is not None
        # and the answers given during the outage are in the version's training data
        version = ModelVersion.objects.get(project=project, number=1)
        assert version.snapshot["n_labeled"] == len(labeled) + 2
