"""Prometheus metrics for operators: what the web and worker processes record, and nothing that reads rows.

Services and the request middleware import the metric objects below and record into them; the ``/metrics``
view (``annotator.views.metrics``) adds the queue depth, read from the database at scrape time, and serves
the lot. With ``PROMETHEUS_MULTIPROC_DIR`` set in the environment, prometheus_client writes every value to
files in that directory, so a scrape of any gunicorn worker sums all processes that share it (web workers,
and Celery workers on the same host); without it each process counts for itself (``docs/deploy.md``,
"Metrics").
"""

from __future__ import annotations

import os
import socket

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()

if MULTIPROC_DIR:
    # Files are named by process id; containers sharing one directory can reuse a pid, so the host name
    # (a container's own) is part of the name.
    _host = socket.gethostname()
    values.ValueClass = values.MultiProcessValue(lambda: f"{_host}-{os.getpid()}")

REQUEST_LATENCY = Histogram(
    "relabel_request_duration_seconds",
    "Time to answer an HTTP request, by URL route, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOB_DURATION = Histogram(
    "relabel_job_duration_seconds",
    "Seconds a finished job spent in each stage (stage 'total': start to finish), by job kind and status.",
    ["kind", "stage", "status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
SAMPLES_PUSHED = Counter(
    "relabel_samples_pushed",
    "Production samples received by the samples push (stored or already known).",
)
DRIFT_ALERTS = Counter(
    "relabel_drift_alerts",
    "Drift windows that raised an alert.",
)

_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def request_observe(*, route: str, method: str, status: int, seconds: float) -> None:
    method = method.upper() if method.upper() in _HTTP_METHODS else "OTHER"
    REQUEST_LATENCY.labels(route=route, method=method, status=f"{status // 100}xx").observe(seconds)


def job_observe(*, kind: str, status: str, timings: dict[str, float]) -> None:
    """One observation per stage the job's timings hold (``<stage>_s`` keys, ``total_s`` as 'total')."""
    for key, seconds in timings.items():
        if key.endswith("_s") and isinstance(seconds, int | float):
            JOB_DURATION.labels(kind=kind, stage=key[:-2], status=status).observe(float(seconds))


def process_registry() -> CollectorRegistry:
    """The values recorded by this process, or by every process sharing PROMETHEUS_MULTIPROC_DIR."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY
