"""``/metrics``: who may scrape it, and the operator's numbers it carries (queue depth, request latency,
samples pushed, job durations)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from annotator.models import Job, ModelVersion
from annotator.services import production
from annotator.services.jobs import job_create, job_finish, job_start
from annotator.services.queue import queue_add

TOKEN = "s3cret-scrape-token"
OUTSIDE = "203.0.113.7"  # TEST-NET-3: never loopback, never allowed by default


@pytest.fixture
def metrics_token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(**extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an authorised scrape as {(name, sorted labels): value}."""
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.mark.django_db
def test_an_address_that_is_not_allowed_gets_403_without_the_token(metrics_token: str):
    client = Client(REMOTE_ADDR=OUTSIDE)

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 403  # not a bearer header


@pytest.mark.django_db
def test_without_a_token_configured_the_endpoint_does_not_exist_for_other_addresses(settings: Any):
    settings.METRICS_TOKEN = ""

    assert Client(REMOTE_ADDR=OUTSIDE).get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_the_token_opens_it_from_any_address(metrics_token: str):
    samples = scrape(REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert any(name == "relabel_queue_items" for name, _ in samples)


@pytest.mark.django_db
def test_an_allowed_address_needs_no_token(settings: Any):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.9"]

    assert Client(REMOTE_ADDR="10.0.0.9").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 404


@pytest.mark.django_db
def test_only_get_is_served(metrics_token: str):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert response.status_code == 405


@pytest.mark.django_db
def test_queue_depth_by_reason_and_status(project, admin, make_examples, annotator):
    examples = make_examples(project, admin, [{"text": f"open work {i}"} for i in range(5)])
    queue_add(project=project, examples=examples[:3], reason="uncertain")
    queue_add(project=project, examples=examples[3:], reason="drift")

    samples = scrape()

    assert value(samples, "relabel_queue_items", reason="uncertain", status="pending") == 3
    assert value(samples, "relabel_queue_items", reason="drift", status="pending") == 2
    assert value(samples, "relabel_queue_items", reason="suspect", status="leased") == 0


@pytest.mark.django_db
def test_a_request_is_timed_by_route_method_and_status_class(project, admin, api_client):
    route = "api/v1/projects/<int:project_id>/"
    labels = {"route": route, "method": "GET", "status": "2xx"}
    before = value(scrape(), "relabel_request_duration_seconds_count", **labels)

    assert api_client(admin).get(f"/api/v1/projects/{project.id}/").status_code == 200

    samples = scrape()
    assert value(samples, "relabel_request_duration_seconds_count", **labels) == before + 1
    assert value(samples, "relabel_request_duration_seconds_bucket", le="+Inf", **labels) == before + 1
    # a URL nobody serves is one series, whatever its path
    Client().get("/no/such/page/42")
    assert total(scrape(), "relabel_request_duration_seconds_count", route="unmatched", status="4xx") >= 1


@pytest.mark.django_db
def test_pushed_samples_are_counted(project, admin, api_client):
    before = value(scrape(), "relabel_samples_pushed_total")

    response = api_client(admin).post(f"/api/v1/projects/{project.id}/samples/",
                                      [{"text": "a production sample"}, {"text": "another one"}], format="json")

    assert response.status_code == 201, response.content
    assert value(scrape(), "relabel_samples_pushed_total") == before + 2


@pytest.mark.django_db
def test_a_finished_job_is_observed_by_kind_stage_and_status(project, admin):
    labels = {"kind": "drift", "status": "succeeded"}
    before = scrape()
    job = job_create(project=project, kind=Job.Kind.DRIFT, user=admin)
    job_start(job.id)
    Job.objects.filter(pk=job.id).update(timings={"measure_s": 0.4})

    job_finish(job.id, Job.Status.SUCCEEDED)
    job_finish(job.id, Job.Status.FAILED)  # already finished: not observed again

    after = scrape()
    for stage in ("total", "measure"):
        name = "relabel_job_duration_seconds_count"
        assert value(after, name, stage=stage, **labels) == value(before, name, stage=stage, **labels) + 1
    measured = value(after, "relabel_job_duration_seconds_sum", stage="measure", **labels)
    assert measured == pytest.approx(value(before, "relabel_job_duration_seconds_sum", stage="measure", **labels) + 0.4)
    assert total(after, "relabel_job_duration_seconds_count", kind="drift", status="failed") == total(
        before, "relabel_job_duration_seconds_count", kind="drift", status="failed")


def test_with_a_multiprocess_directory_a_scrape_sums_every_process(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR: values recorded by two processes (a gunicorn worker, a Celery worker) reach
    the scrape served by a third."""
    root = Path(__file__).resolve().parents[2]  # this checkout's annotator, whatever the venv installed
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = "from annotator import metrics; metrics.SAMPLES_PUSHED.inc(3); metrics.DRIFT_ALERTS.inc()"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, cwd=root)
    read = ("from prometheus_client import generate_latest; from annotator import metrics; "
            "print(generate_latest(metrics.process_registry()).decode())")
    body = subprocess.run([sys.executable, "-c", read], env=env, check=True, capture_output=True, text=True,
                          cwd=root).stdout

    samples = {s.name: s.value for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples["relabel_samples_pushed_total"] == 6
    assert samples["relabel_drift_alerts_total"] == 2


@pytest.mark.django_db
def test_an_alerting_drift_window_is_counted(project, admin, make_examples):

    examples = make_examples(project, admin, [{"text": f"live {i}", "source": "production"} for i in range(4)])
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    summary = {"class_distribution": {}, "class_shift": None, "mean_confidence": 0.5, "confidence_shift": None,
               "embedding_drift": None, "anomalies": {}}
    chosen = SimpleNamespace(record={"kind": "pool"}, becomes_baseline=False)
    window = [(e.id, e.text, None) for e in examples]
    prediction = SimpleNamespace(probs=np.tile([0.4, 0.3, 0.3], (4, 1)))
    before = value(scrape(), "relabel_drift_alerts_total")

    for sequence, alert in ((0, False), (1, True)):
        result = SimpleNamespace(alert=alert, reasons=["embedding drift"] if alert else [],
                                 to_dict=lambda: summary)
        production._window_save(project, version, sequence, window, prediction, result, chosen,
                                label_names=["positive", "negative", "neutral"])

    assert value(scrape(), "relabel_drift_alerts_total") == before + 1
