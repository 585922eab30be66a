"""annotator/dispatch.py: services send tasks by name; Celery beat sends the job sweep."""

from __future__ import annotations

from django.conf import settings

from annotator import dispatch
from annotator.celery import app


def test_every_task_services_send_by_name_is_registered():
    assert {dispatch.task_named(name).name for name in dispatch.TASK_NAMES} == set(dispatch.TASK_NAMES)


def test_the_beat_schedule_sends_the_job_sweep_every_job_sweep_seconds():
    entries = [entry for entry in app.conf.beat_schedule.values() if entry["task"] == dispatch.SWEEP_JOBS]

    assert len(entries) == 1
    (entry,) = entries
    assert entry["schedule"] == settings.JOB_SWEEP_SECONDS
    # A sweep that waited longer than one interval is dropped: the next one is on its way.
    assert entry["options"]["expires"] == max(settings.JOB_SWEEP_SECONDS, 1.0)
    assert dispatch.task_named(dispatch.SWEEP_JOBS).acks_late is False
