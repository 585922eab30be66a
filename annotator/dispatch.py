"""Sending Celery tasks: the one module that does.

Services ask for work by task name (the constants below) and never import ``annotator.tasks``: the task is
looked up in the Celery app's registry when it is sent, so the import graph stays one-way (interfaces ->
services -> dispatch -> models). Every send survives a broker outage the same way: the error is logged, not
raised, so the write that asked for the task stands, and the periodic sweep (``SWEEP_JOBS``, run by Celery
beat; services.recovery.jobs_recover) sends whatever is still owed once Redis is back.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import Any, Literal

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotator.celery import app
from annotator.models import Job

log = logging.getLogger(__name__)

TRAIN_PROJECT = "annotator.tasks.train_project"
SCORE_CHUNK = "annotator.tasks.score_chunk"
REBUILD_QUEUE = "annotator.tasks.rebuild_queue"
CHECK_DRIFT = "annotator.tasks.check_drift"
SWEEP_JOBS = "annotator.tasks.sweep_jobs"
EMBED_EXAMPLES = "annotator.tasks.embed_examples"
DELIVER_WEBHOOK = "annotator.tasks.deliver_webhook"
TASK_NAMES = (TRAIN_PROJECT, SCORE_CHUNK, REBUILD_QUEUE, CHECK_DRIFT, SWEEP_JOBS, EMBED_EXAMPLES, DELIVER_WEBHOOK)

BROKER_ERRORS: tuple[type[BaseException], ...] = (OSError,)
try:  # the errors a publish raises when Redis is unreachable
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, OSError)
except ImportError:  # pragma: no cover
    pass


def task_named(task_name: str) -> Any:
    """The registered task. A web process has not imported the task module (a worker has): it is imported
    here on first use, by the name the task carries, so no module of the services layer imports it."""
    if task_name not in app.tasks:
        importlib.import_module(task_name.rpartition(".")[0])
    return app.tasks[task_name]


def send(task_name: str, *args: Any, countdown: float | None = None) -> bool:
    """Send the task now (to run after ``countdown`` seconds when given). False (logged) when the broker is
    unreachable."""
    task = task_named(task_name)
    try:
        task.apply_async(args=args, countdown=countdown)
    except BROKER_ERRORS as error:
        log.warning("broker unreachable; %s%s not sent: %s", task_name, args, error)
        return False
    return True


def send_after_commit(task_name: str, *args: Any) -> None:
    """Send a task that has no job row of its own once the transaction commits; a broker outage is
    logged, not raised (the sweep catches up: drift checks, scoring chunks and rebuilds of stale jobs)."""
    transaction.on_commit(lambda: send(task_name, *args))


def send_job_after_commit(job: Job, task_name: str, *args: Any) -> None:
    """Send a job's task once the current transaction commits and record that it was sent. With the broker
    down the job stays queued, undispatched, and the sweep sends it when the broker is back."""

    def send_job() -> None:
        if not send(task_name, *args):
            Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
                message="waiting for the broker (Redis) to come back")
            return
        Job.objects.filter(pk=job.pk).update(dispatched_at=timezone.now())

    transaction.on_commit(send_job)


def send_once(key: str, task_name: str, *args: Any, within_seconds: float) -> Literal["sent", "recent", "unreachable"]:
    """Send the task unless a task under the same ``key`` was sent in the last ``within_seconds``, whichever
    process sent it: the memory is a Redis key (SET NX with an expiry), so two sweeps at once send it once,
    and a send that is only slow (queued behind other work) is not repeated at every sweep. After the expiry
    it may be sent again, which the idempotent tasks this serves take in their stride."""
    name = f"relabel:sent:{key}"
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        try:
            if not client.set(name, task_name, nx=True, ex=max(1, round(within_seconds))):
                return "recent"
        except (redis.RedisError, OSError) as error:
            log.warning("broker unreachable; %s%s not sent: %s", task_name, args, error)
            return "unreachable"
        if send(task_name, *args):
            return "sent"
        with contextlib.suppress(redis.RedisError, OSError):  # else the key expires by itself
            client.delete(name)
        return "unreachable"
    finally:
        client.close()
