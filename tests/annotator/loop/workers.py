"""A real Celery worker process for the integration tests, and the broker chores around it.

``WorkerProcess`` runs ``celery -A annotator worker`` (prefork pool, one child) with its own log file, and
beside it a ``celery -A annotator beat`` that sends the periodic job sweep (as the compose file's beat service
does; each test worker brings its own, so a test on its own broker is swept too, and two workers mean two
beats, which the idempotent sweep takes in its stride);
``Workers`` keeps the session's shared worker and any a test starts for itself (another broker, a worker
to kill). Queues are purged before each start, so stale tasks of an earlier run (whose job ids would point
at rows of this run's fresh test database) never reach it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import redis
from django.conf import settings

from tests.annotator.loop.polling import wait_until

QUEUES = ("default", "training", "scoring")
WORKER_START_TIMEOUT = 120
CELERY = str(Path(sys.executable).parent / "celery")


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
    """One ``celery worker`` process (prefork pool, one child) and its ``celery beat``, logs in files."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None

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
        beat_log = self.log_path.with_suffix(".beat.log")
        self._beat_log = beat_log.open("ab")
        self.beat = subprocess.Popen(
            [CELERY, "-A", "annotator", "beat", "--loglevel", "INFO",
             "-s", str(self.log_path.with_suffix(f".{self.name}.beat-schedule"))],
            env=self.env, stdout=self._beat_log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR,
            start_new_session=True,
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
        """SIGKILL the main process, its pool child and its beat at once."""
        if self.process is None:
            return
        for process in (self.process, self.beat):
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        self._log.close()
        self._beat_log.close()

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (finish the task at hand), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        for process in (self.beat, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout)
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
