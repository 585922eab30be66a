"""The Celery app. Tasks live in annotator/tasks.py (sent by name from annotator/dispatch.py); queues, routes
and the beat schedule (the periodic job sweep) in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")

app = Celery("annotator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
