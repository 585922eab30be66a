"""The sweep (services.recovery.jobs_recover, sent by Celery beat): it closes a scoring job whose chunks were
all saved when its worker died before closing it, and two sweeps at once send each owed task once."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from annotator import dispatch
from annotator.models import Example, Job, ModelVersion, Project
from annotator.services import recovery
from annotator.services.recovery import jobs_recover
from tests.annotator.threads import at_once


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


# --- two sweeps at once -------------------------------------------------------------------------------------
QUEUES = ("default", "training", "scoring")


def _messages(client: redis.Redis) -> dict[str, list[bytes]]:
    return {queue: client.lrange(queue, 0, -1) for queue in QUEUES}


def _sent(client: redis.Redis, before: dict[str, list[bytes]]) -> list[tuple[str, str]]:
    """(task, args) of every message that reached the broker since ``before``."""
    found = []
    for queue, raws in _messages(client).items():
        for raw in raws:
            if raw not in before[queue]:
                headers = json.loads(raw).get("headers", {})
                found.append((headers.get("task", "").rsplit(".", 1)[-1], headers.get("argsrepr", "")))
    return sorted(found)


def _at_once(*targets: Callable[[], object]) -> None:
    at_once(*targets, timeout=120, what="a sweep")


def _meeting(monkeypatch: pytest.MonkeyPatch, module: object, name: str, key: Callable[..., object]) -> None:
    """Make the two sweeps meet before each claim of the same thing, so both have read it as owed and
    both try to take it at the same moment (a sweep that never comes is waited for 3 s)."""
    barriers: dict[object, threading.Barrier] = {}
    lock = threading.Lock()
    original = getattr(module, name)

    def meet(*args: object, **kwargs: object) -> object:
        with lock:
            barrier = barriers.setdefault(key(*args, **kwargs), threading.Barrier(2, timeout=3))
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, meet)


def test_two_sweeps_at_once_send_each_task_once(no_shared_worker, make_project, admin, make_examples, monkeypatch):
    # Given one of each thing a sweep sends again, all owed since long before the sweeps
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 30)
    waiting = Job.objects.create(project=make_project(admin, name="Broker was down"), kind=Job.Kind.TRAIN)
    Job.objects.filter(pk=waiting.pk).update(created_at=stale)
    lost = Job.objects.create(project=make_project(admin, name="Worker died training"), kind=Job.Kind.TRAIN,
                              status=Job.Status.RUNNING, attempts=1, started_at=stale, heartbeat_at=stale)
    scoring = make_project(admin, name="Worker died scoring")
    scoring_train = Job.objects.create(project=scoring, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                                       started_at=stale, heartbeat_at=stale)
    version = ModelVersion.objects.create(project=scoring, number=1, status=ModelVersion.Status.READY,
                                          job=scoring_train)
    score = Job.objects.create(project=scoring, kind=Job.Kind.SCORE, status=Job.Status.RUNNING, parent=scoring_train,
                               params={"chunk_ids": [[1], [2]], "chunks": 2, "model_version_id": version.id},
                               result={"done": [0], "done_chunks": 1}, started_at=stale, heartbeat_at=stale)
    rebuilding = make_project(admin, name="Rebuild never ran")
    rebuild_train = Job.objects.create(project=rebuilding, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                                       started_at=stale, heartbeat_at=stale,
                                       result={"promotion": "first version", "promoted": True})
    Job.objects.create(project=rebuilding, kind=Job.Kind.SCORE, status=Job.Status.SUCCEEDED, parent=rebuild_train,
                       started_at=stale, finished_at=stale)
    live = make_project(admin, name="Drift never checked", settings={"drift_window_size": 5})
    serving = ModelVersion.objects.create(project=live, number=1, status=ModelVersion.Status.READY)
    Project.objects.filter(pk=live.pk).update(serving_version=serving)
    pushed = make_examples(live, admin, [{"text": f"pushed while Redis was down {i}", "source": "production"}
                                         for i in range(5)])
    Example.objects.filter(pk__in=[e.pk for e in pushed]).update(created_at=stale)
    _meeting(monkeypatch, recovery, "_claim", lambda job, **_: job.pk)
    _meeting(monkeypatch, dispatch, "send_once", lambda key, *_, **__: key)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = _messages(client)
    counts: list[int] = []
    try:
        # When two sweeps run at once
        _at_once(lambda: counts.append(jobs_recover()), lambda: counts.append(jobs_recover()))

        # Then each owed task reached the broker once, whichever sweep sent it
        assert _sent(client, before) == sorted([
            ("train_project", f"({waiting.pk},)"), ("train_project", f"({lost.pk},)"),
            ("score_chunk", f"({score.pk}, 1, [2])"), ("rebuild_queue", f"({rebuild_train.pk},)"),
            ("check_drift", f"({live.pk},)"),
        ])
        assert sum(counts) == 5
        waiting.refresh_from_db()
        lost.refresh_from_db()
        assert waiting.dispatched_at is not None
        assert lost.heartbeat_at is None and lost.message == "the worker was lost; training again"

        # And a third sweep right after finds nothing owed (the drift check is remembered in Redis)
        again = _messages(client)
        jobs_recover()
        assert _sent(client, again) == []
    finally:
        for queue, raws in _messages(client).items():  # no worker of a later test should run them
            for raw in raws:
                if raw not in before[queue]:
                    client.lrem(queue, 0, raw)
        for key in client.scan_iter(match=f"relabel:sent:*drift-catch-up:{live.pk}:*"):
            client.delete(key)
        client.close()
