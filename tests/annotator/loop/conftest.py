"""Integration fixtures for the loop: a real Celery worker process on real Redis and PostgreSQL.

The worker is a separate ``celery -A annotator worker`` process (no eager mode) that reads the pytest
test database, so every test that shares rows with it is ``django_db(transaction=True)``: its writes are
committed and the worker sees them. One worker serves the whole session (starting one costs seconds of
imports); tests that need their own (another broker, a killed worker) stop it and the next test that asks
for ``worker`` gets a fresh one. After each test the fixture waits until the worker is idle, so the
database flush between tests never pulls rows from under a running task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import redis
from django.conf import settings
from django.test.utils import override_settings

from annotator.models import Job, Role
from tests.annotator.loop.polling import wait_until

QUEUES = ("default", "training", "scoring")
WORKER_START_TIMEOUT = 120
IDLE_TIMEOUT = 120
CELERY = str(Path(sys.executable).parent / "celery")


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


def purge_broker(url: str) -> None:
    """Empty the task queues and forget deliveries of workers that died (their unacked messages would
    come back hours later carrying job ids of another run)."""
    client = redis.Redis.from_url(url)
    try:
        keys = [key for queue in QUEUES for key in client.scan_iter(match=f"{queue}*")]
        client.delete(*keys, "unacked", "unacked_index", "unacked_mutex")
    finally:
        client.close()


def broker_busy(url: str) -> int:
    """Messages waiting in a queue or delivered and not yet acknowledged (a task still running)."""
    client = redis.Redis.from_url(url)
    try:
        waiting = sum(client.llen(key) for queue in QUEUES for key in client.scan_iter(match=f"{queue}*")
                      if client.type(key) == b"list")
        return waiting + client.hlen("unacked")
    finally:
        client.close()


class WorkerProcess:
    """One ``celery worker`` process (prefork pool, one child) with its log in a file."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def broker_url(self) -> str:
        return self.env["REDIS_URL"]

    def start(self) -> WorkerProcess:
        purge_broker(self.broker_url)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CELERY, "-A", "annotator", "worker", "-Q", ",".join(QUEUES), "-c", "1", "--loglevel", "INFO",
             "-n", f"{self.name}@%h"],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR,
            start_new_session=True,  # its own process group: teardown kills it and its pool child together
        )
        wait_until(self._ready, timeout=WORKER_START_TIMEOUT, what=f"worker {self.name} to be ready",
                   interval=0.25, diagnostics=self.log_tail)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
        return f"{self.name}@" in self.log_text() and " ready." in self.log_text()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[psutil.Process]:
        """The pool processes that run the tasks."""
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []

    def kill_child(self) -> int:
        """SIGKILL the pool process (as the OOM killer would): the main process survives and starts a new one."""
        children = self.children()
        assert len(children) == 1, f"expected one pool process, found {children}"
        pid = children[0].pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill(self) -> None:
        """SIGKILL the main process and its pool child at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (finish the task at hand), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.kill()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Workers:
    """The session's workers: the shared one (started on demand) and any a test starts for itself."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.shared: WorkerProcess | None = None
        self.started: list[WorkerProcess] = []

    def new(self, **env: str) -> WorkerProcess:
        worker = WorkerProcess(env={**self.env, **env}, log_path=self.directory / f"worker-{len(self.started)}.log")
        self.started.append(worker)
        return worker

    def shared_worker(self) -> WorkerProcess:
        if self.shared is None or not self.shared.running:
            self.shared = self.new().start()
        return self.shared

    def stop_shared(self) -> None:
        if self.shared is not None:
            self.shared.stop()
            self.shared = None

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop(timeout=5)


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
        "PYTHONUNBUFFERED": "1",
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
