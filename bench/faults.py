"""Fault checks: what happens, what the user sees and what is lost when parts of the stack fail.

    python bench/faults.py [--pool 3000] [--chunk 500] [--import-rows 10000] [--only scoring,redis,...]

Runs as root on loopback against a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgresql://postgres:postgres@127.0.0.1:5432/relabel_faults, dropped and re-created) with its own
redis-server (port 18131), gunicorn (port 18130, two workers) and two Celery workers (one pool process
each, every queue), ARTIFACT_DIR on a tmpfs mounted for the run (var/art-faults/disk). Scenarios:

- training:  SIGKILL of the worker that trains (main process and pool), another worker takes over;
- scoring:   SIGKILL of a pool process while it scores a chunk (Celery redelivers the chunk), then of a whole
             worker while it scores a chunk (the other worker goes on, the sweeper re-sends the lost chunk);
             then the dead worker's delivery comes back, as Redis does after its visibility timeout;
- redis:     production pushes (50 samples per request, back to back) while Redis is restarted twice
             (SIGTERM, then SIGKILL with 5 s down); drift windows must cover every sample afterwards;
- import:    pg_terminate_backend on the connection of a 10,000-row POST /examples/ (held inside its
             transaction, and at timed moments), and on the import_examples command's connection;
- artifacts: ARTIFACT_DIR full (ENOSPC), then read-only (EROFS) while a version trains; then fixed.

Each prints a row (scenario, what happened, what the user saw, what was lost, pass/fail) and the whole
run writes bench/results/faults.json and .md. Jobs are taken over after JOB_STALE_SECONDS=15 here
(production default 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bbc import markdown_table, write_results  # noqa: E402

HTTP_PORT, REDIS_PORT = 18130, 18131
CLASSES = ["business", "politics", "sports"]
STALE_SECONDS = 15
WEB_APP = "faults-web"
VAR = ROOT / "var" / "art-faults"
DISK = VAR / "disk"
LOGS = VAR / "logs"
CELERY = str(Path(sys.executable).parent / "celery")


# --- the stack --------------------------------------------------------------------------------------------
class Redis:
    def __init__(self) -> None:
        from annotator.embedded_redis import redis_server_binary

        self.binary = redis_server_binary()
        self.process: subprocess.Popen | None = None
        (VAR / "redis").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        from annotator.embedded_redis import is_up

        self.process = subprocess.Popen(
            [self.binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(VAR / "redis")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: is_up(REDIS_PORT), 20, "redis-server")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


class Worker:
    """``celery worker`` (one pool process, every queue) in its own process group, logging to a file."""

    count = 0

    def __init__(self, env: dict[str, str]) -> None:
        Worker.count += 1
        self.name = f"faults-{Worker.count}"
        self.log = LOGS / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [CELERY, "-A", "annotator", "worker", "-Q", "default,training,scoring", "-c", "1",
                 "--loglevel", "INFO", "-n", f"{self.name}@%h"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        # Its own beat (the periodic job sweep), a process apart so the worker keeps one child: the pool.
        with (LOGS / f"{self.name}.beat.log").open("wb") as out:
            self.beat = subprocess.Popen(
                [CELERY, "-A", "annotator", "beat", "--loglevel", "INFO",
                 "-s", str(LOGS / f"{self.name}.beat-schedule")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
        self.env = env
        self.redis = Redis()
        self.redis.start()
        # The web's database sessions carry an application_name, so the import check terminates only those.
        web_env = {**env, "DATABASE_URL": env["DATABASE_URL"] + f"?application_name={WEB_APP}"}
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "annotator.wsgi", "-b", f"127.0.0.1:{HTTP_PORT}", "-w", "2",
             "--timeout", "600", "--log-level", "warning"], cwd=ROOT, env=web_env, start_new_session=True)
        self.base = f"http://127.0.0.1:{HTTP_PORT}"
        wait_for(self._web_up, 120, "gunicorn")
        self.workers = [Worker(env), Worker(env)]

    def _web_up(self) -> bool:
        try:
            return requests.get(f"{self.base}/api/v1/health/", timeout=5).ok
        except requests.RequestException:
            return False

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


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


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


# --- scenarios ---------------------------------------------------------------------------------------------
def scenario_training(stack: Stack, api: Api, data: Any) -> list[Row]:
    """SIGKILL the worker that trains (whole worker); the other worker takes the job over."""
    from annotator.models import Job, ModelVersion, Project

    by_label, _ = data
    project_id = api.project("kill while training")
    api.import_rows(project_id, labeled(by_label))
    before = annotations_of(project_id)
    job_id = api.train(project_id)
    victim = wait_for(lambda: next((w for w in stack.workers if w.in_flight("train_project")), None), 300,
                      "a worker training", interval=0.1)
    # Kill once the new version's row exists and its weights are being made.
    wait_for(lambda: api.job(job_id)["stage"] in ("preparing", "embedding", "training", "calibrating", "evaluating"),
             300, "training to be under way", interval=0.1)
    killed_at = time.monotonic()
    victim.kill()
    stack.replace(victim)
    job = api.wait_job(job_id)
    took = time.monotonic() - killed_at
    lost = []
    if job["status"] != "succeeded":
        lost.append(f"job {job['status']}: {job['message']}")
    if annotations_of(project_id) != before:
        lost.append("annotations changed")
    statuses = list(ModelVersion.objects.filter(project_id=project_id).values_list("status", flat=True))
    if "training" in statuses:
        lost.append(f"a version left in training: {statuses}")
    serving = Project.objects.get(pk=project_id).serving_version
    if serving is None or serving.status != "ready":
        lost.append("no ready version serves")
    return [row("SIGKILL worker mid-training (whole worker)",
                f"job taken over after its heartbeat went stale ({STALE_SECONDS} s) and trained again; "
                f"{took:.0f} s from kill to success; attempts {Job.objects.get(pk=job_id).attempts}; versions {statuses}",
                f"job {job['status']}: progress paused, then \"{job['message']}\"", lost,
                {"seconds_to_recover": round(took, 1)})]


def scoring_checks(api: Api, project_id: int, job: dict, pool: list[int], before: list[tuple]) -> list[str]:
    from annotator.models import Example, ExampleScore, Job, QueueItem

    lost = []
    if job["status"] != "succeeded":
        return [f"job {job['status']}: {job['message']}"]
    version_id = job["result"]["model_version_id"]
    score = Job.objects.get(parent_id=job["id"], kind="score")
    if score.status != "succeeded" or len(score.result.get("done", [])) != score.params["chunks"]:
        lost.append(f"score job {score.status} with chunks {score.result.get('done')}")
    scored = ExampleScore.objects.filter(model_version_id=version_id, example_id__in=pool).count()
    if scored != len(pool):
        lost.append(f"{len(pool) - scored} of {len(pool)} pool examples without a score")
    stale = Example.objects.filter(id__in=pool).exclude(latest_score__model_version_id=version_id).count()
    if stale:
        lost.append(f"{stale} examples whose latest score is not the new version's")
    rebuilds = list(Job.objects.filter(parent_id=job["id"], kind="queue_rebuild").values_list("status", flat=True))
    if rebuilds != ["succeeded"]:
        lost.append(f"queue rebuilds: {rebuilds}")
    open_items = list(QueueItem.objects.filter(project_id=project_id, status__in=["pending", "leased"])
                      .values_list("example_id", "slot"))
    if len(open_items) != len(set(open_items)):
        lost.append("duplicate open queue items")
    if annotations_of(project_id) != before:
        lost.append("annotations changed")
    return lost


def scoring_deliveries(stack: Stack) -> int:
    return sum(len(re.findall(r"Task annotator\.tasks\.score_chunk\[[0-9a-f-]+\] received", w.text()))
               for w in stack.workers)


def scenario_scoring(stack: Stack, api: Api, data: Any, *, pool_size: int) -> list[Row]:
    from annotator.models import Job

    by_label, sentences = data
    project_id = api.project("kill while scoring", queue_size=100)
    api.import_rows(project_id, labeled(by_label))
    pool = api.import_rows(project_id, [{"external_id": f"s-{i}", "text": t}
                                        for i, t in enumerate(sentences[:pool_size])])
    before = annotations_of(project_id)
    rows = []
    for how in ("pool process", "whole worker"):
        job_id = api.train(project_id)

        def scoring_worker() -> Any:
            score = Job.objects.filter(parent_id=job_id, kind="score").first()  # noqa: B023
            if score is None or score.status != "running" or not score.result.get("done"):
                return None  # wait for the first chunk to finish, so the kill lands in the middle
            return next((w for w in stack.workers if w.in_flight("score_chunk")), None)

        victim = wait_for(scoring_worker, 900, "a worker scoring a chunk", interval=0.05)
        score = Job.objects.get(parent_id=job_id, kind="score")
        done_before = len(score.result.get("done", []))
        killed_at = time.monotonic()
        if how == "pool process":
            victim.kill_pool_process()
        else:
            victim.kill()
            stack.replace(victim)  # as a supervisor would; the new worker boots while the other one works
        job = api.wait_job(job_id)
        took = time.monotonic() - killed_at
        lost = scoring_checks(api, project_id, job, pool, before)
        chunks = score.params["chunks"]
        if how == "pool process":
            lost_error = "WorkerLostError" in victim.text()
            happened = (f"the running chunk was lost (worker log shows WorkerLostError: {lost_error}) and redelivered "
                        f"at once (acks_late, reject_on_worker_lost); {done_before}/{chunks} chunks were done at the "
                        f"kill; {took:.0f} s to success")
        else:
            happened = (f"the other worker (and the restarted one) scored the queued chunks; the sweeper re-sent the "
                        f"lost one after {STALE_SECONDS} s without a heartbeat; {done_before}/{chunks} chunks done at "
                        f"the kill; {took:.0f} s to success")
        rows.append(row(f"SIGKILL {how} mid-scoring ({chunks} chunks of {score.params['examples'] // chunks})",
                        happened, f"job {job['status']}: \"{job['message']}\"", lost,
                        {"seconds_to_recover": round(took, 1)}))
        if how == "whole worker":
            # Redis hands the dead worker's delivery out again once its visibility timeout (6 h) passed.
            deliveries = scoring_deliveries(stack)
            restored = restore_unacked(stack.env["REDIS_URL"])
            wait_for(lambda: scoring_deliveries(stack) > deliveries or not restored, 120,  # noqa: B023
                     "the late delivery")
            time.sleep(3)
            late = scoring_checks(api, project_id, api.job(job_id), pool, before)
            rows.append(row("late redelivery of the killed chunk (visibility timeout)",
                            f"{restored} unacked deliveries of the dead workers put back in their queues and run "
                            "again: no-ops on finished jobs", "nothing (the job stays succeeded)", late))
    return rows


def restore_unacked(url: str) -> int:
    from kombu import Connection

    with Connection(url, transport_options={"visibility_timeout": 0}) as connection:
        count = connection.default_channel.client.hlen("unacked")
        connection.default_channel.qos.restore_visible(num=100)
    return count


def scenario_redis(stack: Stack, api: Api, data: Any) -> list[Row]:
    """Pushes go on while Redis restarts (SIGTERM; SIGKILL with 5 s down; SIGKILL and the stream stops
    before Redis is back). Every 201 must be stored and scored; drift windows must cover every sample."""
    from annotator.models import DriftWindow, Example

    by_label, _ = data
    window = 50
    project_id = api.project("redis restart", drift_window_size=window, queue_size=0)
    api.import_rows(project_id, labeled(by_label))
    job = api.wait_job(api.train(project_id))
    assert job["status"] == "succeeded", job
    texts = [t for label in CLASSES for t in by_label[label][20:]]
    results: list[tuple[str, int, list[int], float]] = []  # (phase, status, ids, seconds)
    phase = ["warm-up"]
    batches = iter(range(10**6))

    def push() -> None:
        batch = next(batches)
        rows = [{"external_id": f"p-{batch}-{i}", "text": texts[(batch * 50 + i) % len(texts)]} for i in range(50)]
        began, during = time.monotonic(), phase[0]
        try:
            response = api.call("POST", f"/projects/{project_id}/samples/", json=rows)
            status = response.status_code
            ids = response.json().get("ids", []) if status == 201 else []
            if status == 201 and not response.json().get("predictions"):
                status = -201  # stored but answered without predictions
        except requests.RequestException:
            status, ids = -1, []
        results.append((during, status, ids, time.monotonic() - began))

    # Both gunicorn workers load the model before anything is timed.
    warm = [threading.Thread(target=lambda: [push() for _ in range(3)]) for _ in range(3)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    stop = threading.Event()

    def pusher() -> None:
        while not stop.is_set():
            push()

    thread = threading.Thread(target=pusher)
    phase[0] = "baseline"
    thread.start()
    time.sleep(15)
    for name, sig, down in (("SIGTERM restart", signal.SIGTERM, 0.0), ("SIGKILL, 5 s down", signal.SIGKILL, 5.0)):
        phase[0] = name
        stack.redis.stop(sig)
        time.sleep(down)
        stack.redis.start()
        time.sleep(8)
    phase[0] = "SIGKILL, pushes stop while down"
    stack.redis.stop(signal.SIGKILL)
    time.sleep(5)
    stop.set()
    thread.join()
    total = Example.objects.filter(project_id=project_id, source="production").count()
    expected = total // window
    windows_at_stop = DriftWindow.objects.filter(project_id=project_id).count()
    stack.redis.start()
    back = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: DriftWindow.objects.filter(project_id=project_id).count() >= expected, 180,
                 "drift windows to catch up")
    windows = DriftWindow.objects.filter(project_id=project_id).count()
    caught_up = time.monotonic() - back

    timed = [r for r in results if r[0] != "warm-up"]
    print("pushes (phase, status, seconds):", [(p, st, round(sec, 2)) for p, st, _, sec in results], flush=True)
    statuses: dict[int, int] = {}
    for _, status, _, _ in timed:
        statuses[status] = statuses.get(status, 0) + 1
    accepted = [i for _, status, ids, _ in results if status == 201 for i in ids]
    lost = []
    stored = Example.objects.filter(id__in=accepted, source="production").exclude(latest_score=None).count()
    if stored != len(set(accepted)):
        lost.append(f"{len(set(accepted)) - stored} accepted samples missing or unscored")
    if any(s not in (201, 503) for s in statuses):
        lost.append(f"answers {statuses}")
    if windows < expected:
        lost.append(f"drift: {windows} of {expected} windows measured 180 s after Redis was back")
    baseline = sorted(s for p, _, _, s in timed if p == "baseline")
    p50 = baseline[len(baseline) // 2] if baseline else float("nan")
    worst = {p: max(s for q, _, _, s in timed if q == p) for p in dict.fromkeys(q for q, *_ in timed)}
    latency = "; ".join(f"{p}: {n} pushes, max {worst[p]:.2f} s" for p, n in
                        ((p, sum(1 for q, *_ in timed if q == p)) for p in worst))
    return [row("Redis restarted during production pushes (SIGTERM; SIGKILL + 5 s down; SIGKILL, stream stops)",
                f"{len(timed)} timed pushes of 50 samples (after {len(results) - len(timed)} to warm up); "
                f"{len(set(accepted)):,} samples stored and scored; drift windows "
                f"when the stream stopped (Redis down): {windows_at_stop}/{expected}; {caught_up:.0f} s after Redis "
                f"was back (no push since, the sweeper sent the check): {windows}/{expected}",
                f"answers {statuses}; baseline push p50 {p50:.2f} s; {latency} "
                f"(worst/baseline p50 = {max(worst.values()) / p50:.1f}x)", lost,
                {"answers": statuses, "pushes": len(timed), "samples_accepted": len(set(accepted)),
                 "baseline_p50_s": p50, "max_s_by_phase": worst, "windows": [windows_at_stop, windows, expected],
                 "seconds_to_catch_up": round(caught_up, 1)})]


def import_counts(project_id: int) -> tuple[int, int, int]:
    from annotator.models import Annotation, Example, ExampleLabel

    return (Example.objects.filter(project_id=project_id).count(),
            Annotation.objects.filter(example__project_id=project_id).count(),
            ExampleLabel.objects.filter(example__project_id=project_id).count())


def scenario_import(stack: Stack, api: Api, data: Any, *, n: int, url: str) -> list[Row]:
    rows = [{"external_id": f"bulk-{i}", "text": f"bulk import row {i}: the quarterly figures beat the forecast",
             **({"label": CLASSES[i % 3]} if i % 2 == 0 else {})} for i in range(n)]
    full = (n, n // 2, n // 2)
    out = []

    def backends(db: psycopg.Connection, condition: str, columns: str = "pid") -> list[Any]:
        found = db.execute(f"SELECT {columns} FROM pg_stat_activity WHERE datname = current_database() "
                           f"AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND {condition}").fetchall()
        return [r[0] if len(r) == 1 else r for r in found]

    def attempt(label: str, kill: Callable[[psycopg.Connection, threading.Thread], str]) -> Row:
        project_id = api.project(f"import {label}")
        answer: dict[str, Any] = {}

        def post() -> None:
            began = time.monotonic()
            try:
                response = api.call("POST", f"/projects/{project_id}/examples/", json=rows)
                answer.update(status=response.status_code, body=response.text[:300],
                              retry_after=response.headers.get("Retry-After"))
            except requests.RequestException as error:
                answer.update(status=-1, body=str(error)[:300])
            answer["seconds"] = time.monotonic() - began

        with psycopg.connect(url, autocommit=True) as operator:
            thread = threading.Thread(target=post)
            thread.start()
            when = kill(operator, thread)
            thread.join(timeout=120)
        counts = import_counts(project_id)
        lost = []
        if thread.is_alive():
            lost.append("the request hangs")
        if counts not in ((0, 0, 0), full):
            lost.append(f"partial import: {counts}")
        if answer.get("status") not in (201, 503):
            lost.append(f"answer {answer.get('status')}")
        retry = api.call("POST", f"/projects/{project_id}/examples/", json=rows)
        if retry.status_code != 201 or import_counts(project_id) != full:
            lost.append(f"retry answered {retry.status_code} with {import_counts(project_id)} rows")
        saw = f"{answer.get('status')} in {answer.get('seconds', 0):.1f} s"
        if answer.get("status") == 503:
            saw += f" (Retry-After {answer.get('retry_after')}): {answer['body']}"
        return row(f"pg_terminate_backend during a {n:,}-row POST /examples/ ({label})",
                   f"backend terminated {when}; rows after: {counts}; the same request again: {retry.status_code}, "
                   f"{import_counts(project_id)[0]:,} examples", saw, lost)

    def held(operator: psycopg.Connection, _: threading.Thread) -> str:
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE annotator_annotation IN SHARE MODE")
            [pid] = wait_for(lambda: backends(operator, "wait_event_type = 'Lock' AND query LIKE 'COPY%%'"), 120,
                             "the import to wait")
            operator.execute("SELECT pg_terminate_backend(%s)", [pid])
            holder.rollback()
        return "inside its transaction, after its examples and before its annotations"

    out.append(attempt("held at its annotations", held))
    # Undisturbed, the same import takes this long; the timed kills land at fractions of it.
    baseline_project = api.project("import baseline")
    began = time.monotonic()
    api.import_rows(baseline_project, rows)
    baseline = time.monotonic() - began
    for fraction in (0.3, 0.5, 0.7, 0.9):
        delay = round(baseline * fraction, 2)

        def timed(operator: psycopg.Connection, thread: threading.Thread, delay: float = delay) -> str:
            time.sleep(delay)
            while thread.is_alive():
                busy = backends(operator, f"xact_start IS NOT NULL AND application_name = '{WEB_APP}'",
                                "pid, left(query, 40)")
                if busy:
                    for pid, _ in busy:
                        operator.execute("SELECT pg_terminate_backend(%s)", [pid])
                    return f"{delay} s after the request began (running: {busy[0][1]!r})"
                time.sleep(0.002)
            return f"never: the import had finished {delay} s after it began"
        out.append(attempt(f"{fraction:.0%} of the undisturbed {baseline:.2f} s", timed))
    out.append(command_import(api, rows, url, full, backends))
    return out


def command_import(api: Api, rows: list[dict], url: str, full: tuple[int, int, int],
                   backends: Callable[..., list[int]]) -> Row:
    project_id = api.project("import command")
    path = VAR / "import.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["external_id", "text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    command = [sys.executable, "manage.py", "import_examples", str(path), "--project", str(project_id),
               "--user", "bench"]
    env = {**os.environ}
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as operator:
        holder.execute("LOCK TABLE annotator_annotation IN SHARE MODE")
        began = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        [pid] = wait_for(lambda: backends(operator, "wait_event_type = 'Lock' AND query LIKE 'COPY%%'"), 120,
                         "the command to wait")
        operator.execute("SELECT pg_terminate_backend(%s)", [pid])
        holder.rollback()
        out, err = process.communicate(timeout=120)
        took = time.monotonic() - began
    counts = import_counts(project_id)
    lost = []
    if counts != (0, 0, 0):
        lost.append(f"partial import: {counts}")
    if process.returncode == 0:
        lost.append("exit status 0 after a failed import")
    last = (err.strip().splitlines() or [""])[-1]
    if "Traceback" in err:
        lost.append("a traceback instead of a message")
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if again.returncode != 0 or import_counts(project_id) != full:
        lost.append(f"run again: exit {again.returncode}, {import_counts(project_id)}")
    return row(f"pg_terminate_backend during import_examples of {len(rows):,} rows",
               f"backend terminated inside the import's transaction; rows after: {counts}; run again: exit "
               f"{again.returncode}, {import_counts(project_id)[0]:,} examples",
               f"exit {process.returncode} after {took:.1f} s: {last[:200]}", lost)


def labels_of(body: dict) -> tuple:
    return body.get("model_version"), [p["label"] for p in body.get("predictions", [])]


def scenario_artifacts(stack: Stack, api: Api, data: Any, *, mounted: bool) -> list[Row]:
    from annotator.models import ModelVersion
    from training.artifacts import verify_artifact

    by_label, _ = data
    project_id = api.project("artifact disk", queue_size=10)
    api.import_rows(project_id, labeled(by_label))
    job = api.wait_job(api.train(project_id))
    assert job["status"] == "succeeded", job
    probe = {"texts": [by_label["sports"][150], by_label["business"][150]]}
    before = api.call("POST", f"/projects/{project_id}/predict/", json=probe).json()
    v1 = ModelVersion.objects.get(project_id=project_id, number=1)
    rows = []

    def fault_round(name: str, break_it: Callable[[], None], fix: Callable[[], None]) -> None:
        break_it()
        try:
            job = api.wait_job(api.train(project_id))
            after = api.call("POST", f"/projects/{project_id}/predict/", json=probe)
            versions = dict(ModelVersion.objects.filter(project_id=project_id).values_list("number", "status"))
            leftovers = sorted(p.name for p in (DISK / f"project-{project_id}").iterdir())
            verify_artifact(DISK / v1.artifact_path)  # raises when a file of the serving version changed
            intact = True
        finally:
            fix()
        lost = []
        if job["status"] != "failed":
            lost.append(f"job {job['status']}")
        if after.status_code != 200 or labels_of(after.json()) != labels_of(before):
            lost.append(f"predictions {after.status_code}: {after.text[:200]}")
        if [n for n, s in versions.items() if s == "ready"] != [1] or "training" in versions.values():
            lost.append(f"versions {versions}")
        if leftovers != ["v1"]:
            lost.append(f"files left: {leftovers}")
        rows.append(row(f"ARTIFACT_DIR {name} while a version trains",
                        f"job failed; version rows {versions}; directories {leftovers}; v1 files verified: {intact}",
                        f"job failed: \"{job['message']}\"; predictions 200 from v{after.json().get('model_version')}",
                        lost))

    filler = DISK / "filler"

    def fill() -> None:
        free = shutil.disk_usage(DISK).free - 20 * 2**20
        with filler.open("wb") as out:
            for _ in range(free // 2**20):
                out.write(b"\0" * 2**20)

    def remount(mode: str) -> Callable[[], None]:
        return lambda: subprocess.run(["mount", "-o", f"remount,{mode}", str(DISK)], check=True)

    if mounted:
        fault_round("full (tmpfs, 20 MB free)", fill, lambda: filler.unlink())
        fault_round("read-only (tmpfs remounted ro)", remount("ro"), remount("rw"))
    else:
        project_dir = DISK / f"project-{project_id}"
        fault_round("unwritable (chmod 0555, not root)", lambda: project_dir.chmod(0o555),
                    lambda: project_dir.chmod(0o755))
    job = api.wait_job(api.train(project_id))
    rows.append(row("ARTIFACT_DIR fixed: train again", f"job {job['status']}: {job['message']}",
                    "a new version trains as usual", [] if job["status"] == "succeeded" else [job["message"]]))
    return rows


# --- main --------------------------------------------------------------------------------------------------
SCENARIOS = ("training", "scoring", "redis", "import", "artifacts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=3000, help="unlabeled sentences scored in the scoring scenario")
    parser.add_argument("--chunk", type=int, default=500, help="SCORE_CHUNK_SIZE of the workers")
    parser.add_argument("--import-rows", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--disk-mb", type=int, default=900, help="size of the tmpfs for ARTIFACT_DIR")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    assert set(chosen) <= set(SCENARIOS), chosen

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_faults")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    LOGS.mkdir(parents=True, exist_ok=True)
    DISK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["umount", "-l", str(DISK)], capture_output=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.disk_mb}m", "tmpfs", str(DISK)], capture_output=True).returncode == 0
    if not mounted:
        shutil.rmtree(DISK, ignore_errors=True)
        DISK.mkdir(parents=True)
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": "bench-only", "LOG_LEVEL": "WARNING",
           "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "ARTIFACT_DIR": str(DISK),
           "EMBEDDING_CACHE_DIR": str(VAR / "embeddings"), "THROTTLE_PUSH": "1000000/min",
           "JOB_SWEEP_SECONDS": "2", "JOB_HEARTBEAT_SECONDS": "2", "JOB_STALE_SECONDS": str(STALE_SECONDS),
           "SCORE_CHUNK_SIZE": str(args.chunk), "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "REDIS_URL", "ARTIFACT_DIR",
                                           "EMBEDDING_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("bench", "", "bench-password")
    data = corpus()
    stack = Stack(env)
    rows: list[Row] = []
    try:
        token = requests.post(f"{stack.base}/api/v1/auth/token/",
                              json={"username": "bench", "password": "bench-password"}).json()["token"]
        api = Api(stack.base, token)
        runs: dict[str, Callable[[], list[Row]]] = {
            "training": lambda: scenario_training(stack, api, data),
            "scoring": lambda: scenario_scoring(stack, api, data, pool_size=args.pool),
            "redis": lambda: scenario_redis(stack, api, data),
            "import": lambda: scenario_import(stack, api, data, n=args.import_rows, url=url),
            "artifacts": lambda: scenario_artifacts(stack, api, data, mounted=mounted),
        }
        for scenario in chosen:
            began = time.monotonic()
            try:
                new = runs[scenario]()
            except Exception as error:  # noqa: BLE001 - a scenario that breaks is a failed row, not a lost run
                new = [row(scenario, f"the check itself failed: {type(error).__name__}: {error}", "?", [str(error)])]
            for r in new:
                r["seconds"] = round(time.monotonic() - began, 1)
                print(f"[{'pass' if r['pass'] else 'FAIL'}] {r['scenario']}: {r['what happened']} | "
                      f"{r['what the user saw']} | lost: {r['lost']}", flush=True)
            rows += new
    finally:
        stack.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(DISK)], check=False)

    headers = ["scenario", "what happened", "what the user saw", "lost", "pass"]
    table = markdown_table(headers, [[r[h] if h != "pass" else ("pass" if r[h] else "FAIL") for h in headers]
                                     for r in rows])
    notes = (f"Stack: gunicorn (2 workers), two Celery workers (one pool process each), PostgreSQL, redis-server; "
             f"jobs are taken over after {STALE_SECONDS} s without a heartbeat (production default 60 s); scoring "
             f"chunks of {args.chunk}. ARTIFACT_DIR on a {args.disk_mb} MB tmpfs"
             f"{'' if mounted else ' (not mounted: not root; chmod instead)'}. A row passes when nothing a user "
             "wrote was lost and every answer was a success or a clear, retryable error.")
    write_results("faults", "Fault checks", {"rows": rows, "all_pass": all(r["pass"] for r in rows),
                                             "settings": {"pool": args.pool, "chunk": args.chunk,
                                                          "import_rows": args.import_rows,
                                                          "stale_seconds": STALE_SECONDS, "tmpfs": mounted}},
                  table, notes)
    sys.exit(0 if all(r["pass"] for r in rows) else 1)


if __name__ == "__main__":
    main()
