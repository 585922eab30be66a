"""The services a benchmark runs against, started the same way by every script: a scratch PostgreSQL database
(dropped, re-created and migrated), Redis (its own redis-server or a flushed db), gunicorn and Celery workers
(with beat), each process in its own process group so that stopping the stack stops their children too."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent

# Variables every bench server and worker runs with (DEBUG off, no network for models, quiet logs).
BASE_ENV = {"DEBUG": "0", "SECRET_KEY": "bench-only", "LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
# What a script that also uses Django in its own process copies into its environment before ``django.setup()``.
DJANGO_KEYS = ("DATABASE_URL", "DEBUG", "SECRET_KEY", "REDIS_URL", "ARTIFACT_DIR", "EMBEDDING_CACHE_DIR")


# --- the database -----------------------------------------------------------------------------------------
def recreate_database(url: str) -> str:
    """Drop (closing its connections) and create the database of ``url``; returns its name."""
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def migrate(env: dict[str, str], *, superuser: bool = False) -> None:
    """``manage.py migrate`` (and ``createsuperuser --noinput`` from DJANGO_SUPERUSER_* when asked)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if superuser:
        subprocess.run([sys.executable, "manage.py", "createsuperuser", "--noinput", "-v0"], cwd=ROOT, env=env,
                       check=True)


def setup_django(env: dict[str, str], keys: Iterable[str] = DJANGO_KEYS) -> None:
    """Use Django in this process against the bench database: copy ``keys`` of ``env`` and set it up."""
    os.environ.update({k: env[k] for k in keys})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django

    django.setup()


def code_under_test(env: dict[str, str]) -> dict[str, Any]:
    """Which checkout the server and worker import (they run with cwd = this repository)."""
    where = subprocess.run([sys.executable, "-c", "import annotator, training; print(annotator.__file__); "
                            "print(training.__file__)"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "annotator", "training"],
                           capture_output=True, text=True).stdout.strip()
    modules = where.stdout.split()
    for module in modules:
        if not Path(module).resolve().is_relative_to(ROOT):
            raise SystemExit(f"the server would import {module}, outside {ROOT}")
    return {"root": str(ROOT), "modules": modules, "commit": commit, "uncommitted_changes": bool(dirty)}


# --- waiting -------------------------------------------------------------------------------------------------
def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Call ``probe`` until it returns something true (returned) or ``timeout`` seconds pass (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def healthy(base: str) -> bool:
    """Whether the server at ``base`` answers ``GET /api/v1/health/`` with a success."""
    try:
        return requests.get(f"{base}/api/v1/health/", timeout=5).ok
    except requests.RequestException:
        return False


def redis_up(port: int) -> bool:
    """Whether a redis-server on loopback ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- commands --------------------------------------------------------------------------------------------
def redis_command(port: int, binary: str = "redis-server", workdir: Path | None = None) -> list[str]:
    """A throwaway redis-server on loopback: no snapshots, no append-only file."""
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return command + (["--dir", str(workdir)] if workdir else [])


def gunicorn_command(port: int, workers: int, *, timeout: int = 600, threads: int = 0) -> list[str]:
    """gunicorn serving ``annotator.wsgi`` on loopback (``threads``: the gthread worker with that many)."""
    command = [sys.executable, "-m", "gunicorn", "annotator.wsgi", "-b", f"127.0.0.1:{port}"]
    if threads:
        command += ["-k", "gthread", "-w", str(workers), "--threads", str(threads)]
    else:
        command += ["-w", str(workers)]
    return command + ["--timeout", str(timeout), "--log-level", "warning"]


def celery_worker_command(name: str, *, queues: str = "default,training,scoring", concurrency: int = 1,
                          loglevel: str = "WARNING", beat: bool = False) -> list[str]:
    """A Celery worker of ``queues`` (``beat``: with the periodic job sweep embedded)."""
    command = [sys.executable, "-m", "celery", "-A", "annotator", "worker", "-Q", queues, "-c", str(concurrency),
               "--loglevel", loglevel, "-n", f"{name}@%h"]
    if beat:  # its schedule file lives in var/ (settings.CELERY_BEAT_SCHEDULE_FILENAME), absent in a fresh clone
        (ROOT / "var").mkdir(exist_ok=True)
    return command + (["--beat"] if beat else [])


def celery_beat_command(schedule: Path, *, loglevel: str = "WARNING") -> list[str]:
    """Celery beat alone (the periodic job sweep), its schedule in the file ``schedule``."""
    return [sys.executable, "-m", "celery", "-A", "annotator", "beat", "--loglevel", loglevel, "-s", str(schedule)]


# --- processes -------------------------------------------------------------------------------------------
class Processes:
    """Named processes, each in its own process group, logging to ``logs/<name>.log`` (``logs=None``: to this
    process's output), stopped together, children included."""

    def __init__(self, env: dict[str, str], logs: Path | None) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, str] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w") if self.logs else None  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                   stderr=subprocess.STDOUT if out else None, start_new_session=True)
        self.processes[name] = process
        self.commands[name] = " ".join(command)
        return process

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log" if self.logs else None
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path and path.exists() else ""

    def wait_healthy(self, base: str, attempts: int = 240) -> None:
        """Wait for gunicorn's health answer, failing early when a process of the stack exits."""
        for _ in range(attempts):
            self.check_alive()
            if healthy(base):
                return
            time.sleep(0.5)
        raise RuntimeError("gunicorn did not answer /api/v1/health/")

    def stop(self, grace: float = 20) -> None:
        """SIGTERM to every group, ``grace`` seconds to exit, then SIGKILL to whatever is left in the groups."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # stragglers and pool children left in the group
            process.wait()
        self.processes.clear()


class RedisServer:
    """A redis-server that a check can stop (with any signal) and start again on the same port."""

    def __init__(self, port: int, *, binary: str = "redis-server", workdir: Path | None = None) -> None:
        self.port = port
        self.command = redis_command(port, binary, workdir)
        self.process: subprocess.Popen | None = None
        if workdir:
            workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: redis_up(self.port), 20, "redis-server")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
