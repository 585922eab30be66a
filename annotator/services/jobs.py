"""Jobs: one row per long operation, the single source of its status, progress, logs and result.

Tasks lock their job row before working on it (so a redelivered task never runs a job twice), write
progress through :class:`JobReporter`, and finish through :func:`job_finish`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotator import metrics
from annotator.errors import Conflict, InvalidInput
from annotator.models import Job, Project
from annotator.services.webhooks import job_event

log = logging.getLogger(__name__)
LOG_TAIL_CHARS = 20_000


class JobCancelled(Exception):
    """The job's cancel flag was set; the task stops at its next check."""


def job_create(
    *, project: Project, kind: str, params: dict[str, Any] | None = None, user: AbstractBaseUser | None = None,
    parent: Job | None = None,
) -> Job:
    """Create a queued job. A second training job for a project raises Conflict naming the running one."""
    try:
        with transaction.atomic():
            return Job.objects.create(
                project=project, kind=kind, params=params or {}, created_by=user, parent=parent
            )
    except IntegrityError:
        running = (
            Job.objects.filter(project=project, kind=kind, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
            .order_by("id").first()
        )
        if running is None:  # pragma: no cover - the constraint only fires when one exists
            raise
        raise Conflict(f"a {kind} job is already {running.status} for this project", job_id=running.id) from None


MAX_ATTEMPTS = 3


def stale_before() -> Any:
    """No heartbeat since then: the worker that held the job is gone (settings.JOB_STALE_SECONDS)."""
    return timezone.now() - timezone.timedelta(seconds=settings.JOB_STALE_SECONDS)


class Heartbeat:
    """Keeps a job's ``heartbeat_at`` fresh from a background thread while a task works on it."""

    def __init__(self, job_id: int, interval: float | None = None) -> None:
        self.job_id = job_id
        self.interval = interval if interval is not None else settings.JOB_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                Job.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
                self._stop.wait(self.interval)
        except Exception:  # noqa: BLE001 - a missed beat only delays recovery
            log.exception("heartbeat of job %s failed", self.job_id)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        Job.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def job_start(job_id: int) -> Job | None:
    """Mark a queued job running. None when it already finished, or when another worker is still working
    on it (a duplicate delivery: its heartbeat is fresh)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in Job.FINISHED:
            return None
        if job.status == Job.Status.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale_before():
            log.info("job %s is alive on another worker; this delivery does nothing", job_id)
            return None
        if job.cancel_requested:
            _finish(job, Job.Status.CANCELLED, message="cancelled before it started")
            return None
        job.status = Job.Status.RUNNING
        job.attempts = F("attempts") + 1
        job.started_at = job.started_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
    job.refresh_from_db()
    return job


def _finish(job: Job, status: str, *, message: str = "", result: dict | None = None, error: str = "") -> None:
    job.status = status
    job.finished_at = timezone.now()
    if status == Job.Status.SUCCEEDED:
        job.progress = 1.0
    if message:
        job.message = message[:500]
    if result is not None:
        job.result = result
    if error:
        job.error = error[-20_000:]
    if job.started_at:
        job.timings = {**job.timings, "total_s": round((job.finished_at - job.started_at).total_seconds(), 3)}
    job.save()
    # In the caller's transaction: the event is sent only if the job's end commits.
    job_event(job)
    # Observed once: every caller holds the job row's lock and finishes only a job that was not finished.
    metrics.job_observe(kind=job.kind, status=status, timings=job.timings)


def job_finish(job_id: int, status: str, *, message: str = "", result: dict | None = None, error: str = "") -> Job:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status not in Job.FINISHED:
            _finish(job, status, message=message, result=result, error=error)
    return job


def job_finish_first(job_id: int, status: str, *, message: str = "", result: dict | None = None) -> Job | None:
    """Finish a job that is not finished yet and return it; None when it already was. Under the job row's
    lock only one of several concurrent callers gets the job back: the one whose call finished it, and so the
    one that does what follows (a scoring job's promotion decision and queue rebuild)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in Job.FINISHED:
            return None
        _finish(job, status, message=message, result=result)
    return job


def job_fail(job_id: int, exc: BaseException) -> Job:
    detail = "".join(traceback.format_exception(exc))
    log.error("job %s failed: %s", job_id, detail)
    return job_finish(job_id, Job.Status.FAILED, message=f"failed: {exc}"[:500], error=detail)


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next progress check."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in Job.FINISHED:
            raise InvalidInput(f"job {job.id} already {job.status}")
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        if job.status == Job.Status.QUEUED:
            _finish(job, Job.Status.CANCELLED, message="cancelled")
        Job.objects.filter(parent=job, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
            cancel_requested=True
        )
    return job


class JobReporter:
    """Progress writes for a running job, throttled so a tight training loop does not hammer the database.

    Progress never goes backwards; ``check`` raises JobCancelled once the job's cancel flag is set.
    """

    def __init__(self, job: Job, *, start: float = 0.0, end: float = 1.0, min_interval: float = 1.0) -> None:
        self.job_id = job.pk
        self.start, self.end = start, end
        self.min_interval = min_interval
        self._last_write = 0.0
        self._last_check = 0.0
        self._progress = job.progress
        self._log: list[str] = []
        # Shared with spans: which stage runs since when, and the time each stage took.
        self._clock: dict[str, Any] = {"stage": None, "started": time.monotonic()}
        self._timings: dict[str, float] = {}

    def span(self, start: float, end: float) -> JobReporter:
        """A reporter for a sub-range of this one (e.g. training takes 0.1..0.7 of the job)."""
        child = JobReporter.__new__(JobReporter)
        child.__dict__.update(self.__dict__)
        width = self.end - self.start
        child.start, child.end = self.start + width * start, self.start + width * end
        child._log = self._log
        child._timings = self._timings
        child._clock = self._clock
        return child

    def __call__(self, fraction: float, stage: str, message: str = "", *, force: bool = False) -> None:
        value = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        self._progress = max(self._progress, value)
        now = time.monotonic()
        if stage != self._clock["stage"]:
            self._close_stage(now)
            self._clock["stage"] = stage
            force = True
        if message:
            self._log.append(f"{timezone.now():%H:%M:%S} [{stage}] {message}")
        if not force and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        self.flush(stage, message)

    def _close_stage(self, now: float) -> None:
        if self._clock["stage"] is not None:
            key = f"{self._clock['stage']}_s"
            self._timings[key] = round(self._timings.get(key, 0.0) + now - self._clock["started"], 3)
        self._clock["started"] = now

    def close(self) -> None:
        """Record the time of the stage in progress (call when the job's own part ends)."""
        self._close_stage(time.monotonic())
        self.flush()

    def flush(self, stage: str | None = None, message: str | None = None) -> None:
        fields: dict[str, Any] = {"progress": self._progress}
        if self._timings:
            timings = Job.objects.only("timings").get(pk=self.job_id).timings
            fields["timings"] = {**timings, **self._timings}
        if stage is not None:
            fields["stage"] = stage[:100]
        if message:
            fields["message"] = message[:500]
        if self._log:
            tail = "\n".join(self._log)
            self._log.clear()
            job = Job.objects.only("log").get(pk=self.job_id)
            fields["log"] = (job.log + ("\n" if job.log else "") + tail)[-LOG_TAIL_CHARS:]
        # Progress only grows, even when two reporters of one job race.
        Job.objects.filter(pk=self.job_id, progress__lte=self._progress).update(**fields)
        Job.objects.filter(pk=self.job_id).exclude(progress__lte=self._progress).update(
            **{k: v for k, v in fields.items() if k != "progress"}
        )

    def check(self) -> None:
        now = time.monotonic()
        if now - self._last_check < 1.0:
            return
        self._last_check = now
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise JobCancelled()

    def should_cancel(self) -> bool:
        try:
            self.check()
        except JobCancelled:
            return True
        return False
