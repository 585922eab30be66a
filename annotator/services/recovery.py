"""The sweep: send again what never reached the broker or whose worker died.

Celery beat sends ``tasks.sweep_jobs`` every ``JOB_SWEEP_SECONDS`` (settings.CELERY_BEAT_SCHEDULE), and any
worker runs it. Its work is idempotent, so two sweeps at once (a slow one and the next, or two beats) send
each task once: every job it acts on is claimed first by a conditional update of the job row (it must still
be as the sweep read it: same status, heartbeat and dispatch time), so of two sweeps only one wins it; the
drift catch-up remembers what it sent in Redis (``dispatch.send_once``), not in the process.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from annotator import dispatch
from annotator.models import DriftWindow, Example, Job, ModelVersion, Project, Source
from annotator.services.jobs import MAX_ATTEMPTS, job_finish, stale_before
from annotator.services.scoring import conclude_scoring, finish_scoring
from annotator.services.webhook_delivery import deliveries_recover


def jobs_recover(*, older_than_seconds: float = 5.0) -> int:
    """Send again what never reached the broker or whose worker died. Returns how many tasks were sent.

    - a queued train job that was never dispatched (the broker was down) is sent;
    - a running train job still in training whose heartbeat is stale is sent again (its worker died; the
      next attempt starts over), or failed after MAX_ATTEMPTS;
    - a running scoring job whose heartbeat is stale gets its unfinished chunks sent again (chunks upsert),
      or, when every chunk is done (its worker died while closing it), is closed and the rebuild sent;
    - a train job whose scoring finished but whose promotion was never decided gets it decided (then the rebuild
      sent), and one whose queue rebuild never ran gets the rebuild sent;
    - a project with a full window of production samples that no drift check measured gets one sent;
    - a webhook delivery well past its due time (its task was lost) is sent again.
    """
    sent = 0
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    for job in Job.objects.filter(status=Job.Status.QUEUED, dispatched_at__isnull=True, created_at__lt=cutoff,
                                  kind=Job.Kind.TRAIN):
        if not _claim(job, dispatched_at=timezone.now(), message=""):
            continue  # another sweep sent it
        if not dispatch.send(dispatch.TRAIN_PROJECT, job.pk):
            _release(job)
            return sent
        sent += 1
    stale = stale_before()
    # Silent for too long: a stale heartbeat, or none since the job was (re)sent.
    running = Job.objects.filter(status=Job.Status.RUNNING).filter(
        models.Q(heartbeat_at__lt=stale)
        | models.Q(heartbeat_at__isnull=True, dispatched_at__lt=stale)
        | models.Q(heartbeat_at__isnull=True, dispatched_at__isnull=True, started_at__lt=stale))
    for job in running.filter(kind=Job.Kind.SCORE):
        done = set(job.result.get("done", []))
        chunk_ids = job.params.get("chunk_ids", [])
        if chunk_ids and len(done) >= len(chunk_ids):
            # Every chunk was saved, but the worker died before it closed the job: close it now (this also
            # sends the queue rebuild), or the train job would stay running and block the project's training.
            # Only the call that finishes the scoring job goes on (services.scoring.finish_scoring).
            finish_scoring(job.pk)
            sent += 1
            continue
        if not _claim(job, heartbeat_at=timezone.now()):
            continue
        for index, chunk in enumerate(chunk_ids):
            if index not in done and dispatch.send(dispatch.SCORE_CHUNK, job.pk, index, chunk):
                sent += 1
    for job in running.filter(kind=Job.Kind.TRAIN):
        score = Job.objects.filter(parent=job, kind=Job.Kind.SCORE).order_by("-id").first()
        if score is None:
            if job.attempts >= MAX_ATTEMPTS:
                job_finish(job.pk, Job.Status.FAILED, message=f"the worker died {job.attempts} times; gave up "
                           "(the serving version is unchanged)")
            # No heartbeat until a worker starts it: job_start takes a job without a live heartbeat.
            elif _claim(job, heartbeat_at=None, dispatched_at=timezone.now(),
                        message="the worker was lost; training again"):
                if dispatch.send(dispatch.TRAIN_PROJECT, job.pk):
                    sent += 1
                else:
                    _release(job)
        elif score.status == Job.Status.SUCCEEDED and "promotion" not in (job.result or {}):
            # The worker died after finishing the scoring job, before deciding promotion: decide it now (this
            # also sends the rebuild), or the version would stay undecided.
            if _claim(job, heartbeat_at=timezone.now()):
                conclude_scoring(score)
                sent += 1
        elif score.status == Job.Status.SUCCEEDED and _claim(job, heartbeat_at=timezone.now()):
            if dispatch.send(dispatch.REBUILD_QUEUE, job.pk):
                sent += 1
            else:
                _release(job)
    return sent + _drift_catch_up(cutoff) + deliveries_recover()


def _claim(job: Job, **changes: Any) -> bool:
    """Write ``changes`` to the job's row only if the row is still as this sweep read it; True when this sweep
    won the job. Of two sweeps that read the same row, the second finds it changed and leaves it."""
    as_read = Job.objects.filter(pk=job.pk, status=job.status, heartbeat_at=job.heartbeat_at,
                                 dispatched_at=job.dispatched_at)
    return as_read.update(**changes) == 1


def _release(job: Job) -> None:
    """Put back what ``_claim`` changed when the send failed (the broker is down): the next sweep tries again."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at, dispatched_at=job.dispatched_at,
                                         message=job.message)


def drift_resend_seconds() -> float:
    """How long a catch-up drift check may take before the sweep sends it again (its worker may have died;
    before that it is only slow, queued behind other work)."""
    return 5 * float(settings.JOB_STALE_SECONDS)


def _drift_catch_up(cutoff: Any) -> int:
    """Send the drift check of projects holding a full window of production samples that no check has
    measured: the pushes' own checks never reached the broker (Redis was down) and no push came since."""
    sent = 0
    database = settings.DATABASES["default"]["NAME"]
    for project in Project.objects.filter(serving_version__status=ModelVersion.Status.READY).only("id", "settings"):
        last = DriftWindow.objects.filter(project=project).order_by("-sequence").first()
        after = last.last_example_id if last else 0
        if after is None:
            continue
        size = int(project.setting("drift_window_size"))
        completing = list(Example.objects.filter(project=project, source=Source.PRODUCTION, id__gt=after)
                          .order_by("id").values_list("created_at", flat=True)[size - 1:size])
        if not completing or completing[0] >= cutoff:  # no full window, or its own check may be on its way
            continue
        outcome = dispatch.send_once(f"{database}:drift-catch-up:{project.pk}:{after}", dispatch.CHECK_DRIFT,
                                     project.pk, within_seconds=drift_resend_seconds())
        if outcome == "unreachable":
            break
        if outcome == "sent":
            sent += 1
    return sent
