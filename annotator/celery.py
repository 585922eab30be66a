"""The Celery app. Tasks live in annotator/tasks.py; queues and routes in settings."""

import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")

app = Celery("annotator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

SWEEP_SECONDS = float(os.environ.get("JOB_SWEEP_SECONDS", 15))


@signals.worker_ready.connect
def resume_undispatched_jobs(**_: object) -> None:
    """Keep jobs moving whatever happened to the broker or to other workers: jobs created while Redis was
    down, and jobs whose worker died (stale heartbeat), are sent again (services.jobs.jobs_recover)."""
    import threading
    import time

    def sweep() -> None:
        from annotator.services.jobs import jobs_recover

        while True:
            try:
                jobs_recover()
            except Exception:  # noqa: BLE001 - the sweeper must outlive database or broker hiccups
                logging.getLogger(__name__).exception("job sweep failed")
            time.sleep(SWEEP_SECONDS)

    threading.Thread(target=sweep, name="job-sweeper", daemon=True).start()
