"""Jobs through the API with a real worker: one training at a time, cancel, the project's job list."""

from __future__ import annotations

import pytest

from annotator import tasks
from annotator.models import Job, ModelVersion, Project
from tests.annotator.assertions import error_list
from tests.annotator.loop.corpus import labeled_rows
from tests.annotator.loop.polling import poll_job
from tests.annotator.loop.steps import TRAIN_TIMEOUT, import_rows, start_training, train

CLASSES = ["business", "politics", "sports"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_second_training_is_refused_while_one_runs_and_the_running_one_can_be_cancelled(
    worker, loop_project, as_admin, as_reviewer,
):
    # Given a full fine-tuning job that is running
    project = loop_project(labels=CLASSES, max_length=32)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
    running = start_training(as_admin, project.id, mode="full")
    poll_job(as_admin, running["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail,
             until=lambda body: body["status"] == "running")

    # When a reviewer asks for another training
    second = as_reviewer.post(f"/api/v1/projects/{project.id}/train/", {}, format="json")

    # Then it is refused with 409 naming the running job, and no job is added
    assert second.status_code == 409
    assert second.json()["job"]["id"] == running["id"]
    assert second.json()["job"]["status"] == "running"
    assert "already" in error_list(second)[0]["message"]
    assert Job.objects.filter(project=project, kind=Job.Kind.TRAIN).count() == 1

    # When the reviewer cancels the running job
    response = as_reviewer.post(f"/api/v1/jobs/{running['id']}/cancel/")
    assert response.status_code == 200, response.content

    # Then the worker stops it; no version serves and its half-made version is marked failed
    body, _ = poll_job(as_admin, running["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail)
    assert body["status"] == "cancelled", body
    assert "cancelled" in body["message"]
    assert Project.objects.get(pk=project.id).serving_version is None
    assert not ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY).exists()
    assert not ModelVersion.objects.filter(project=project, status=ModelVersion.Status.TRAINING).exists()
    cancelling_again = as_reviewer.post(f"/api/v1/jobs/{running['id']}/cancel/")
    assert cancelling_again.status_code == 400

    # and a new training may start and succeed
    finished = train(as_admin, project.id, diagnostics=worker.log_tail)
    assert finished["result"]["model_version"] >= 1

    # and the project's jobs are listed newest first
    jobs = as_admin.get(f"/api/v1/projects/{project.id}/jobs/").json()
    ids = [job["id"] for job in jobs["results"]]
    assert jobs["count"] == len(ids) == Job.objects.filter(project=project).count()
    assert ids == sorted(ids, reverse=True)
    assert {running["id"], finished["id"]} <= set(ids)
    assert ids.index(finished["id"]) < ids.index(running["id"])
    kinds = {job["id"]: job["kind"] for job in jobs["results"]}
    assert {kinds[running["id"]], kinds[finished["id"]]} == {"train"}
    assert {"score", "queue_rebuild"} <= set(kinds.values())


@pytest.mark.django_db(transaction=True)
def test_cancelling_while_scoring_ends_the_training_job(worker, project, as_admin):
    # Given a training job in its scoring stage: the version is stored and its chunks are being scored
    train_job = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                                   progress=0.8, stage="scoring")
    score_job = Job.objects.create(project=project, kind=Job.Kind.SCORE, status=Job.Status.RUNNING,
                                   parent=train_job, params={"model_version_id": 0, "chunks": 1, "examples": 0})

    # When a reviewer cancels the training job and a chunk then reaches the worker
    response = as_admin.post(f"/api/v1/jobs/{train_job.id}/cancel/")
    assert response.status_code == 200, response.content
    tasks.score_chunk.delay(score_job.id, 0, [])

    # Then the training job ends (it must not stay "running" and block every later training)
    body, _ = poll_job(as_admin, train_job.id, timeout=60, diagnostics=worker.log_tail)
    assert body["status"] == "cancelled", body
    assert Job.objects.get(pk=score_job.id).status == Job.Status.CANCELLED
    again = as_admin.post(f"/api/v1/projects/{project.id}/train/", {}, format="json")
    assert again.status_code == 202, again.content
    as_admin.post(f"/api/v1/jobs/{again.json()['job']['id']}/cancel/")
