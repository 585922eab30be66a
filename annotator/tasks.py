"""Celery tasks: thin. Each takes ids, re-fetches rows, calls a service, and is safe to run twice.

Services never import this module: they send tasks by name through ``annotator.dispatch``. Routes
(settings.CELERY_TASK_ROUTES): train_* on the ``training`` queue, score_* on ``scoring``, the rest on
``default``; Celery beat sends ``sweep_jobs`` (settings.CELERY_BEAT_SCHEDULE). acks_late + reject_on_worker_lost: a task whose worker dies is delivered again, and the job
row's lock and status make the second run continue or stop instead of repeating finished work.
"""

from __future__ import annotations

import logging

from celery import shared_task

from annotator.models import Job
from annotator.services import jobs as job_services

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def train_project(job_id: int) -> None:
    from annotator.services.snapshot import TrainingInputError
    from annotator.services.training import run_training

    job = job_services.job_start(job_id)
    if job is None:
        return
    if job.attempts > job_services.MAX_ATTEMPTS:
        job_services.job_finish(job_id, Job.Status.FAILED, message=f"gave up after {job.attempts - 1} attempts "
                                "(the worker died each time); the serving version is unchanged")
        return
    reporter = job_services.JobReporter(job)
    try:
        with job_services.Heartbeat(job_id):
            run_training(job, reporter)
    except job_services.JobCancelled:
        job_services.job_finish(job_id, Job.Status.CANCELLED, message="cancelled; the serving version is unchanged")
    except TrainingInputError as error:
        job_services.job_finish(job_id, Job.Status.FAILED, message=str(error))
    except Exception as error:  # noqa: BLE001 - the job row records every failure for the user
        from training.train import TrainingCancelled

        if isinstance(error, TrainingCancelled):
            job_services.job_finish(job_id, Job.Status.CANCELLED, message="cancelled; the serving version is unchanged")
        else:
            job_services.job_fail(job_id, error)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def score_chunk(self, score_job_id: int, index: int, example_ids: list[int]) -> None:  # noqa: ANN001
    from annotator.services.scoring import score_chunk as run

    try:
        # The heartbeat tells the sweep that this chunk is being worked on: without it, a chunk that takes
        # longer than JOB_STALE_SECONDS would be sent again (and scored twice) while it runs.
        with job_services.Heartbeat(score_job_id):
            run(score_job_id, index, example_ids)
    except OSError as error:  # e.g. the artifact store hiccuped: try this chunk again before giving up
        if self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=2 ** self.request.retries) from error
        _fail_scoring(score_job_id, error)
        raise
    except Exception as error:
        _fail_scoring(score_job_id, error)
        raise


def _fail_scoring(score_job_id: int, error: BaseException) -> None:
    job = Job.objects.filter(pk=score_job_id).first()
    if job is not None:
        job_services.job_fail(score_job_id, error)
        if job.parent_id:
            job_services.job_fail(job.parent_id, error)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rebuild_queue(train_job_id: int) -> None:
    from annotator.services.queue_policy import rebuild_queue as run

    try:
        run(train_job_id)
    except Exception as error:
        job_services.job_fail(train_job_id, error)
        raise


@shared_task(acks_late=True, reject_on_worker_lost=True)
def embed_examples(project_id: int, example_ids: list[int]) -> int:
    """Embed newly imported examples ahead of training and scoring (services.embeddings); idempotent."""
    from annotator.services.embeddings import embed_examples as run

    return run(project_id, example_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def check_drift(project_id: int) -> None:
    from annotator.services.production import drift_check

    drift_check(project_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(delivery_id: int) -> None:
    """One attempt at a webhook delivery; a retry is sent again with its backoff by the service."""
    from annotator.services.webhook_delivery import delivery_attempt

    delivery_attempt(delivery_id)


# Not acks_late: a sweep lost with its worker is not worth delivering again, the next beat sends another.
@shared_task(acks_late=False, reject_on_worker_lost=False)
def sweep_jobs() -> int:
    """Celery beat sends this every JOB_SWEEP_SECONDS: send again what never reached the broker or whose
    worker died (services.recovery.jobs_recover; idempotent, so overlapping sweeps send each task once)."""
    from annotator.services.recovery import jobs_recover

    return jobs_recover()
