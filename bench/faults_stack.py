"""The stack of bench/faults.py and its helpers: its own redis-server, gunicorn whose database sessions are
named (so the import check terminates only those), two Celery workers each with its own beat, that a
scenario kills and replaces, and the REST calls and rows the scenarios share."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from typing import Any

import psutil
import requests

from bench.stack import (
    ROOT,
    RedisServer,
    celery_beat_command,
    celery_worker_command,
    gunicorn_command,
    healthy,
    wait_for,
)

HTTP_PORT, REDIS_PORT = 18130, 18131
CLASSES = ["business", "politics", "sports"]
STALE_SECONDS = 15
WEB_APP = "faults-web"
VAR = ROOT / "var" / "art-faults"
DISK = VAR / "disk"
LOGS = VAR / "logs"


class Worker:
    """``celery worker`` (one pool process, every queue) in its own process group, logging to a file."""

    count = 0

    def __init__(self, env: dict[str, str]) -> None:
        Worker.count += 1
        self.name = f"faults-{Worker.count}"
        self.log = LOGS / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(celery_worker_command(self.name, loglevel="INFO"),
                                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        # Its own beat (the periodic job sweep), a process apart so the worker keeps one child: the pool.
        with (LOGS / f"{self.name}.beat.log").open("wb") as out:
            self.beat = subprocess.Popen(celery_beat_command(LOGS / f"{self.name}.beat-schedule", loglevel="INFO"),
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: " ready." in self.text(), 180, f"worker {self.name}")

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def in_flight(self, task: str) -> set[str]:
        """Deliveries of ``task`` this worker received and has not finished (from its log)."""
        received, ended = set(), set()
        for task_id, event in re.findall(rf"Task annotator\.tasks\.{task}\[([0-9a-f-]+)\] "
                                         r"(received|succeeded|raised|retry)", self.text()):
            (received if event == "received" else ended).add(task_id)
        return received - ended

    def kill_pool_process(self) -> int:
        [child] = psutil.Process(self.process.pid).children()
        os.kill(child.pid, signal.SIGKILL)
        return child.pid

    def kill(self) -> None:
        for process in (self.process, self.beat):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def stop(self) -> None:
        for process in (self.beat, self.process):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill()


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        from annotator.embedded_redis import redis_server_binary

        self.env = env
        self.redis = RedisServer(REDIS_PORT, binary=redis_server_binary(), workdir=VAR / "redis")
        self.redis.start()
        # The web's database sessions carry an application_name, so the import check terminates only those.
        web_env = {**env, "DATABASE_URL": env["DATABASE_URL"] + f"?application_name={WEB_APP}"}
        self.web = subprocess.Popen(gunicorn_command(HTTP_PORT, 2), cwd=ROOT, env=web_env, start_new_session=True)
        self.base = f"http://127.0.0.1:{HTTP_PORT}"
        wait_for(lambda: healthy(self.base), 120, "gunicorn")
        self.workers = [Worker(env), Worker(env)]

    def replace(self, dead: Worker) -> None:
        """A supervisor starts a new worker in place of a dead one."""
        self.workers[self.workers.index(dead)] = Worker(self.env)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.web.pid, signal.SIGTERM)
        self.web.wait(timeout=30)
        self.redis.stop()



# --- data and API helpers ----------------------------------------------------------------------------------
def corpus() -> tuple[dict[str, list[str]], list[str]]:
    """BBC articles per topic (for labeled rows and pushes) and their sentences (for pools)."""
    from training.data import load_bbc_news

    texts, labels = load_bbc_news(limit_per_label=200)
    by_label: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_label.setdefault(label, []).append(text)
    sentences = [s for label in CLASSES for text in by_label[label][20:]
                 for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s) <= 300]
    return by_label, sentences


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}/api/v1{path}", timeout=600, **kwargs)

    def project(self, name: str, **settings: Any) -> int:
        response = self.call("POST", "/projects/", json={"name": name, "task": "single_label", "labels": CLASSES,
                                                          "settings": {"max_length": 64, **settings}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def import_rows(self, project_id: int, rows: list[dict]) -> list[int]:
        response = self.call("POST", f"/projects/{project_id}/examples/", json=rows)
        assert response.status_code == 201, response.text[:500]
        return response.json()["ids"]

    def train(self, project_id: int) -> int:
        response = self.call("POST", f"/projects/{project_id}/train/", json={"mode": "frozen"})
        assert response.status_code == 202, response.text
        return response.json()["job"]["id"]

    def job(self, job_id: int) -> dict:
        return self.call("GET", f"/jobs/{job_id}/").json()

    def wait_job(self, job_id: int, timeout: float = 900) -> dict:
        return wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed", "cancelled") else None)(
            self.job(job_id)), timeout, f"job {job_id}", interval=1)


def labeled(by_label: dict[str, list[str]], n: int = 10) -> list[dict]:
    return [{"external_id": f"l-{label}-{i}", "text": by_label[label][i], "label": label}
            for label in CLASSES for i in range(n)]


def annotations_of(project_id: int) -> list[tuple]:
    from annotator.models import Annotation

    return list(Annotation.objects.filter(example__project_id=project_id).order_by("id").values_list("id", "labels"))


Row = dict[str, Any]


def row(scenario: str, happened: str, saw: str, lost: list[str], extra: dict | None = None) -> Row:
    return {"scenario": scenario, "what happened": happened, "what the user saw": saw,
            "lost": "; ".join(lost) if lost else "nothing", "pass": not lost, **(extra or {})}

