"""The sweeper closes a scoring job whose chunks were all saved when its worker died before closing it."""

from __future__ import annotations

import json
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from annotator.models import Job, ModelVersion
from annotator.services.jobs import jobs_recover


def _rebuild_messages(client: redis.Redis, train_job_id: int) -> list[bytes]:
    found = []
    for raw in client.lrange("default", 0, -1):
        headers = json.loads(raw).get("headers", {})
        if headers.get("task") == "annotator.tasks.rebuild_queue" and str(train_job_id) in headers.get("argsrepr", ""):
            found.append(raw)
    return found


def test_a_scoring_job_with_every_chunk_done_but_never_closed_is_closed_and_the_rebuild_sent(no_shared_worker, project):
    # No worker runs: none may take the rebuild message, nor sweep these jobs itself.
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 30)
    train = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                               started_at=stale, heartbeat_at=stale)
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY, job=train)
    score = Job.objects.create(project=project, kind=Job.Kind.SCORE, status=Job.Status.RUNNING, parent=train,
                               params={"chunk_ids": [[1, 2], [3]], "chunks": 2, "model_version_id": version.id},
                               result={"done": [0, 1], "done_chunks": 2}, started_at=stale, heartbeat_at=stale)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        jobs_recover()

        score.refresh_from_db()
        train.refresh_from_db()
        assert score.status == Job.Status.SUCCEEDED and score.message == "scored"
        assert train.status == Job.Status.RUNNING and train.heartbeat_at > stale  # the rebuild finishes it
        assert len(_rebuild_messages(broker, train.pk)) == 1  # one rebuild, not one per sweep branch

        jobs_recover()  # the next sweep has nothing left to do for these jobs
        assert len(_rebuild_messages(broker, train.pk)) == 1
    finally:
        for raw in _rebuild_messages(broker, train.pk):  # no worker of a later test should run it
            broker.lrem("default", 0, raw)
