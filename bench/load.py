"""Load: annotators and a production stream against the whole stack while a retrain runs, then integrity checks.

    python bench/load.py [--duration 300] [--annotators 16] [--push-rate 100] [--push-batch 10]

On loopback, against its own PostgreSQL database (BENCH_DATABASE_URL, default .../relabel_load, dropped and
re-created), its own redis-server (--redis-port, default 18140), gunicorn (``annotator.wsgi``, gthread,
--web-workers x --web-threads on --port 18141) and two Celery workers as docker/compose.yaml splits them
(``-Q training -c 1`` and ``-Q scoring,default -c --scoring-concurrency``):

1. setup (not measured): a project with --labeled labeled and --unlabeled unlabeled BBC news paragraphs
   (bench/loop.py's ``bbc_paragraphs``), a first model trained through the API (mode frozen), and a backlog
   of every unlabeled example not in the rebuilt queue added with ``queue_add`` (reason random, priority -1,
   no model version: a rebuild keeps such items), so the annotators do not run out;
2. load for --duration seconds: ``POST /projects/{id}/train/`` at the start (the retrain), --annotators
   threads, one user each, looping ``GET /projects/{id}/queue/next/?n=1`` then ``POST /queue/{id}/submit/``
   (with --think seconds between pairs; 0 = closed loop, as fast as the server answers), --pushers threads
   sending ``POST /projects/{id}/samples/`` batches of --push-batch texts on a fixed schedule of --push-rate
   samples/s (a late batch goes out at once; at most --pushers requests in flight), and one thread polling
   ``GET /jobs/{id}/`` every 2 s;
3. after the load, the retrain is awaited (--train-grace seconds), then the database is checked: no queue
   item or example leased to two annotators at once (from the client-side lease log), at most one queue
   annotation per queue item (overlap 1), every 2xx submit is an Annotation row with the label, user,
   example and queue item the client saw, no queue annotation the clients did not get a 2xx for, every 2xx
   push's ids are production examples with the texts sent, and no failed push left rows.

Prints a table (p50/p95/p99 and counts per endpoint, error classes, push rate, CPU shares, load average) and
writes bench/results/load.json and load.md. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bbc import ROOT, markdown_table, write_results  # noqa: E402
from load_measure import (  # noqa: E402
    ENDPOINTS,
    VIOLATIONS,
    backend_cpu,
    check_integrity,
    detail_tables,
    fmt_ms,
    group_cpu,
    load_notes,
    lock_summary,
    machine_busy,
    summarize,
    timeline,
)
from loop import bbc_paragraphs, percentile, session_for, wait_job  # noqa: E402
from stack import (  # noqa: E402
    BASE_ENV,
    Processes,
    celery_worker_command,
    gunicorn_command,
    migrate,
    recreate_database,
    redis_command,
    redis_up,
    setup_django,
    wait_for,
)

from training.data import BBC_LABELS as LABELS  # noqa: E402

PASSWORD = "load-bench-password"


# --- processes ------------------------------------------------------------------------------------------
class Stack(Processes):
    """redis-server, gunicorn and two Celery workers, each in its own process group (stopped together)."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], logs: Path) -> None:
        super().__init__(env, logs)
        self.base = f"http://127.0.0.1:{args.port}"
        self.start("redis", redis_command(args.redis_port))
        try:
            wait_for(lambda: redis_up(args.redis_port), 10, "redis-server", interval=0.1)
        except TimeoutError:
            raise RuntimeError("redis-server did not start") from None

    def start_app(self, args: argparse.Namespace) -> None:
        self.start("gunicorn", gunicorn_command(args.port, args.web_workers, timeout=120, threads=args.web_threads))
        self.start("celery-training", celery_worker_command(f"load-training-{args.port}", queues="training"))
        self.start("celery-scoring", celery_worker_command(f"load-scoring-{args.port}", queues="scoring,default",
                                                           concurrency=args.scoring_concurrency, beat=True))
        self.wait_healthy(self.base)


# --- the load -------------------------------------------------------------------------------------------
class Load:
    """The client side: threads per role, every request and every lease logged with its timing."""

    def __init__(self, base: str, project_id: int, args: argparse.Namespace, truth: dict[str, str],
                 push_texts: list[str], db_url: str) -> None:
        self.base = base
        self.pid = project_id
        self.args = args
        self.truth = truth
        self.push_texts = push_texts
        self.db_url = db_url
        self.phase = ""
        self.stop = threading.Event()
        self.t0 = 0.0
        self.train_running = threading.Event()
        # (phase, endpoint, start s since the phase began, latency ms, status, class, retrain running)
        self.events: list[tuple[str, str, float, float, int, str, bool]] = []
        # (client, item id, example id, next sent, next received, submit sent, submit received, submit status)
        self.leases: list[tuple[str, int, int, float, float, float | None, float | None, int | None]] = []
        self.submits_ok: list[tuple[str, int, int, str, int]] = []  # client, item, example, label, annotation id
        self.pushes: list[tuple[int, list[str], int, list[int] | None]] = []  # batch, external ids, status, ids
        self.push_lateness: dict[str, list[float]] = defaultdict(list)
        self.exceptions: list[str] = []
        # (phase, active backends, [(waiting query, blocking query)]) once a second
        self.lock_samples: list[tuple[str, int, list[tuple[str, str]]]] = []
        self.train_job: dict[str, Any] | None = None
        self.train_done_at: float | None = None
        self.train_final: dict[str, Any] | None = None
        self._next_batch = 0
        self._phase_first_batch = 0
        self._batch_lock = threading.Lock()

    def _call(self, endpoint: str, session: requests.Session, method: str, url: str,
              classify: Any = None, **kwargs: Any) -> requests.Response | None:
        start = time.perf_counter()
        during = self.train_running.is_set()
        try:
            response = session.request(method, url, timeout=120, **kwargs)
        except requests.RequestException as exc:
            took = (time.perf_counter() - start) * 1000
            self.exceptions.append(f"{endpoint}: {type(exc).__name__}: {str(exc)[:200]}")
            self.events.append((self.phase, endpoint, start - self.t0, took, 0, f"error: {type(exc).__name__}",
                                during))
            return None
        took = (time.perf_counter() - start) * 1000
        kind = classify(response) if classify else None
        if kind is None:
            kind = "ok" if 200 <= response.status_code < 300 else f"error: HTTP {response.status_code}"
        self.events.append((self.phase, endpoint, start - self.t0, took, response.status_code, kind, during))
        return response

    def annotator(self, name: str, session: requests.Session) -> None:
        rng = random.Random(name)

        def next_class(r: requests.Response) -> str | None:
            if r.status_code == 204 or (r.status_code == 200 and r.content.strip() == b"[]"):
                return "empty queue (expected)"
            return None

        def submit_class(r: requests.Response) -> str | None:
            return "409 lease lost (expected)" if r.status_code == 409 else None

        while not self.stop.is_set():
            sent = time.perf_counter()
            r = self._call("GET queue/next", session, "GET", f"{self.base}/api/v1/projects/{self.pid}/queue/next/",
                           classify=next_class, params={"n": 1})
            received = time.perf_counter()
            items = r.json() if r is not None and r.status_code == 200 else None
            if not items:
                self.stop.wait(0.5)
                continue
            item = items[0]
            label = self.truth.get(item["example"]["text"]) or rng.choice(LABELS)
            submit_sent = time.perf_counter()
            s = self._call("POST queue/submit", session, "POST", f"{self.base}/api/v1/queue/{item['id']}/submit/",
                           classify=submit_class, json={"label": label})
            self.leases.append((name, item["id"], item["example"]["id"], sent, received, submit_sent,
                                time.perf_counter(), s.status_code if s is not None else None))
            if s is not None and s.status_code == 201:
                self.submits_ok.append((name, item["id"], item["example"]["id"], label, s.json()["id"]))
            if self.args.think:
                self.stop.wait(self.args.think)

    def pusher(self, session: requests.Session) -> None:
        interval = self.args.push_batch / self.args.push_rate
        size = self.args.push_batch
        while True:
            with self._batch_lock:
                batch = self._next_batch
                self._next_batch += 1
            due = self.t0 + (batch - self._phase_first_batch) * interval
            if self.stop.wait(max(0.0, due - time.perf_counter())) or (batch + 1) * size > len(self.push_texts):
                with self._batch_lock:  # not sent: the next phase starts from it
                    self._next_batch = min(self._next_batch, batch)
                return
            self.push_lateness[self.phase].append(time.perf_counter() - due)
            rows = [{"text": self.push_texts[batch * size + j], "external_id": f"push-{batch}-{j}"} for j in range(size)]
            r = self._call("POST samples", session, "POST", f"{self.base}/api/v1/projects/{self.pid}/samples/",
                           json=rows)
            ids = r.json().get("ids") if r is not None and r.status_code == 201 else None
            self.pushes.append((batch, [row["external_id"] for row in rows], r.status_code if r is not None else 0, ids))

    def poller(self, session: requests.Session) -> None:
        r = self._call("POST train", session, "POST", f"{self.base}/api/v1/projects/{self.pid}/train/",
                       json={"mode": "frozen"})
        if r is None or r.status_code != 202:
            return
        self.train_job = r.json()["job"]
        self.train_running.set()
        while not self.stop.is_set():
            self.stop.wait(2)
            j = self._call("GET jobs/{id}", session, "GET", f"{self.base}/api/v1/jobs/{self.train_job['id']}/")
            if j is not None and j.ok and j.json()["status"] in ("succeeded", "failed", "cancelled"):
                self.train_done_at = time.perf_counter() - self.t0
                self.train_final = j.json()
                self.train_running.clear()
                return

    def lock_sampler(self) -> None:
        """Once a second: the backends of this database that wait on a lock, with what blocks them."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop.wait(1.0):
                rows = conn.execute(
                    "SELECT a.state, a.wait_event_type, left(a.query, 70), "
                    "(SELECT left(b.query, 70) FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]) "
                    "FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
                ).fetchall()
                active = sum(1 for r in rows if r[0] == "active")
                waits = [(r[2], r[3] or "?") for r in rows if r[1] == "Lock"]
                self.lock_samples.append((self.phase, active, waits))

    def run(self, phase: str, duration: float, annotators: list[tuple[str, requests.Session]],
            pushers: list[requests.Session], retrain: requests.Session | None) -> float:
        self.phase = phase
        self.stop = threading.Event()
        self._phase_first_batch = self._next_batch
        threads = [threading.Thread(target=self.lock_sampler, name="locks")]
        if retrain is not None:
            threads.append(threading.Thread(target=self.poller, args=(retrain,), name="poller"))
        threads += [threading.Thread(target=self.annotator, args=(n, s), name=n) for n, s in annotators]
        threads += [threading.Thread(target=self.pusher, args=(s,), name=f"pusher{i}") for i, s in enumerate(pushers)]
        self.t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        self.stop.wait(duration)
        self.stop.set()
        for thread in threads:
            thread.join()
        return time.perf_counter() - self.t0


def warm_up(base: str, pid: int, sessions: list[tuple[str, requests.Session]], args: argparse.Namespace) -> float:
    """Load the serving model into every gunicorn worker before the clock starts: rounds of concurrent
    POST /predict/ calls (they write nothing) until a round answers fast. A production server is warm; the
    cold load after the retrain promotes a new version happens inside the measured load all the same."""
    start = time.perf_counter()
    for _ in range(10):
        times: list[float] = []

        def one(session: requests.Session, times: list[float] = times) -> None:
            t = time.perf_counter()
            r = session.post(f"{base}/api/v1/projects/{pid}/predict/", json={"texts": ["warm-up text"]}, timeout=600)
            r.raise_for_status()
            times.append(time.perf_counter() - t)

        threads = [threading.Thread(target=one, args=(s,)) for _, s in sessions[: args.web_workers * 3]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(times) == len(threads) and max(times) < 2.0:
            break
    return time.perf_counter() - start


# --- main -----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--baseline", type=float, default=30,
                        help="seconds of annotators alone, then of pushes alone, before the load (0 skips)")
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--think", type=float, default=0.0, help="seconds an annotator waits between pairs")
    parser.add_argument("--push-rate", type=float, default=100, help="target production samples per second")
    parser.add_argument("--push-batch", type=int, default=10, help="samples per POST /samples/ request")
    parser.add_argument("--pushers", type=int, default=2, help="push requests in flight at most")
    parser.add_argument("--labeled", type=int, default=800)
    parser.add_argument("--unlabeled", type=int, default=10_000)
    parser.add_argument("--train-grace", type=float, default=900, help="seconds to wait for the retrain after the load")
    parser.add_argument("--port", type=int, default=18141)
    parser.add_argument("--redis-port", type=int, default=18140)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=6)
    parser.add_argument("--scoring-concurrency", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_load")
    recreate_database(url)
    artifacts = Path(os.environ.get("BENCH_ARTIFACT_DIR", ROOT / "var" / "art-load"))
    subprocess.run(["rm", "-rf", str(artifacts)], check=True)
    (artifacts / "logs").mkdir(parents=True)
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "ARTIFACT_DIR": str(artifacts),
           "EMBEDDING_CACHE_DIR": str(artifacts / "cache")}
    migrate(env)
    setup_django(env)
    from django.contrib.auth import get_user_model

    from annotator.models import Example, Job, Project, QueueItem
    from annotator.services.queue import queue_add

    get_user_model().objects.create_superuser("bench", "", PASSWORD)
    stack = Stack(args, env, artifacts / "logs")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        stack.start_app(args)
        base = stack.base
        setup_t0 = time.perf_counter()
        admin = session_for(base, "bench", PASSWORD)
        project = admin.post(f"{base}/api/v1/projects/", json={
            "name": "load bench", "task": "single_label", "labels": LABELS,
            "settings": {"max_length": 128, "drift_window_size": 200}}).json()
        pid = project["id"]
        n_push = int(args.push_rate * (args.duration + args.baseline) * 1.05) + args.push_batch * (args.pushers + 1)
        data = bbc_paragraphs(args.labeled + args.unlabeled + n_push, seed=6)
        truth = dict(data[: args.labeled + args.unlabeled])
        rows = [{"text": t, "external_id": f"l{i}", "label": lab, "source": "seed"}
                for i, (t, lab) in enumerate(data[: args.labeled])]
        rows += [{"text": t, "external_id": f"u{i}"}
                 for i, (t, _) in enumerate(data[args.labeled: args.labeled + args.unlabeled])]
        for start in range(0, len(rows), 10_000):
            r = admin.post(f"{base}/api/v1/projects/{pid}/examples/", json=rows[start:start + 10_000], timeout=600)
            assert r.status_code == 201, r.text[:300]
        job = admin.post(f"{base}/api/v1/projects/{pid}/train/", json={"mode": "frozen"}).json()["job"]
        first = wait_job(admin, base, job["id"], timeout=3600)
        assert first["status"] == "succeeded" and first["result"].get("promoted"), first
        first_train_s = time.perf_counter() - setup_t0
        project_row = Project.objects.get(pk=pid)
        open_examples = QueueItem.objects.filter(project_id=pid, status__in=["pending", "leased"]).values("example_id")
        backlog = list(Example.objects.filter(project_id=pid, label_source="").exclude(id__in=open_examples)
                       .values_list("id", flat=True))
        queue_add(project=project_row, examples=backlog, reason=QueueItem.Reason.RANDOM, priority=-1.0,
                  explanation="bench/load.py backlog so that the annotators do not run dry")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE annotator_queueitem")
            conn.execute("VACUUM ANALYZE annotator_example")
        annotators = []
        for c in range(args.annotators):
            name = f"annotator{c:02d}"
            assert admin.post(f"{base}/api/v1/users/", json={"username": name, "password": PASSWORD}).status_code == 201
            r = admin.post(f"{base}/api/v1/projects/{pid}/members/", json={"username": name, "role": "annotator"})
            assert r.status_code in (200, 201), r.text[:200]
            annotators.append((name, session_for(base, name, PASSWORD)))
        admin_sessions = [session_for(base, "bench", PASSWORD) for _ in range(args.pushers + 1)]
        warm_s = warm_up(base, pid, annotators, args)
        setup_s = time.perf_counter() - setup_t0
        load = Load(base, pid, args, truth, [t for t, _ in data[args.labeled + args.unlabeled:]], url)
        walls: dict[str, float] = {}
        if args.baseline:
            print(f"setup {setup_s:.0f} s; baselines of {args.baseline:.0f} s", flush=True)
            walls["annotators alone"] = load.run("annotators alone", args.baseline, annotators, [], None)
            walls["pushes alone"] = load.run("pushes alone", args.baseline, [], admin_sessions[1:], None)
        queue_start = QueueItem.objects.filter(project_id=pid, status="pending").count()
        print(f"load for {args.duration:.0f} s with {queue_start} pending items", flush=True)

        pgids = {name: p.pid for name, p in stack.processes.items()}
        loadavg_start = os.getloadavg()
        cpu0, pg0, busy0, self0 = group_cpu(pgids), backend_cpu(url), machine_busy(), resource.getrusage(
            resource.RUSAGE_SELF)
        walls["load"] = wall = load.run("load", args.duration, annotators, admin_sessions[1:], admin_sessions[0])
        cpu1, pg1, busy1, self1 = group_cpu(pgids), backend_cpu(url), machine_busy(), resource.getrusage(
            resource.RUSAGE_SELF)
        loadavg_end = os.getloadavg()
        machine_cpu = busy1[1] - busy0[1]  # CPU-seconds of all cores over the load
        cpu_s = {name: cpu1[name] - cpu0[name] for name in pgids}
        cpu_s["postgres backends (this database)"] = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
        cpu_s["load generator (this process)"] = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
        cpu_s["everything else on the machine"] = (busy1[0] - busy0[0]) - sum(cpu_s.values())
        cpu_share = {name: v / machine_cpu for name, v in cpu_s.items()}
        cpu_share["idle"] = 1 - (busy1[0] - busy0[0]) / machine_cpu

        train: dict[str, Any] = {"job_id": load.train_job["id"] if load.train_job else None,
                                 "finished_during_load": load.train_final is not None}
        if load.train_job:
            try:
                final = load.train_final or wait_job(admin, base, load.train_job["id"], timeout=args.train_grace)
            except TimeoutError:
                final = admin.get(f"{base}/api/v1/jobs/{load.train_job['id']}/").json()
            row = Job.objects.get(pk=load.train_job["id"])
            train.update({"status": final["status"], "result": final.get("result"),
                          "seen_finished_by_poller_at_s": load.train_done_at,
                          "server_seconds": (row.finished_at - row.created_at).total_seconds()
                          if row.finished_at else None, "timings": row.timings})
        integrity = check_integrity(load, pid)
        queue_end = QueueItem.objects.filter(project_id=pid, status="pending").count()
    finally:
        stack.stop()

    phases = {phase: summarize([e for e in load.events if e[0] == phase], walls[phase]) for phase in walls}
    endpoints = phases["load"]
    total = sum(e["count"] for e in endpoints.values())
    errors = sum(e["errors"] for e in endpoints.values())
    load_pairs = sum(1 for e in load.events if e[0] == "load" and e[1] == "POST queue/submit" and e[5] == "ok")
    load_pushed = args.push_batch * sum(1 for e in load.events if e[0] == "load" and e[1] == "POST samples"
                                        and e[5] == "ok")
    lateness = sorted(load.push_lateness["load"])
    violations = sum(integrity[k] for k in VIOLATIONS)
    error_classes = Counter({f"{endpoint}: {k}": n for endpoint, e in endpoints.items()
                             for k, n in e["classes"].items() if k != "ok"})
    locks = {phase: lock_summary(load.lock_samples, phase) for phase in walls}

    table = markdown_table(
        ["endpoint (load phase)", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "expected (409/empty)",
         "errors"],
        [[k, e["count"], f"{e['per_s']:.1f}", fmt_ms(e["p50_ms"]), fmt_ms(e["p95_ms"]), fmt_ms(e["p99_ms"]), fmt_ms(e["max_ms"]),
          e["expected"], e["errors"]] for k, e in endpoints.items()])
    baseline_rows = []
    for endpoint, phase in (("GET queue/next", "annotators alone"), ("POST queue/submit", "annotators alone"),
                            ("POST samples", "pushes alone")):
        alone = phases.get(phase, {}).get(endpoint)
        loaded = endpoints.get(endpoint)
        if alone and loaded:
            baseline_rows.append([endpoint, f"{alone['per_s']:.1f}", fmt_ms(alone["p50_ms"]), fmt_ms(alone["p95_ms"]),
                                  f"{loaded['per_s']:.1f}", fmt_ms(loaded["p50_ms"]), fmt_ms(loaded["p95_ms"]),
                                  f"{loaded['p95_ms'] / alone['p95_ms']:.1f}x"])
    baseline = markdown_table(["endpoint", "alone: per s", "p50 ms", "p95 ms", "under the load: per s", "p50 ms",
                               "p95 ms", "p95 ratio"], baseline_rows)
    retrain_split = markdown_table(
        ["endpoint (load phase)", "retrain running: n", "p50 ms", "p95 ms", "retrain done: n", "p50 ms", "p95 ms"],
        [[k, e["retrain_running"]["count"], fmt_ms(e["retrain_running"]["p50_ms"]), fmt_ms(e["retrain_running"]["p95_ms"]),
          e["retrain_not_running"]["count"], fmt_ms(e["retrain_not_running"]["p50_ms"]),
          fmt_ms(e["retrain_not_running"]["p95_ms"])] for k, e in endpoints.items() if k in ENDPOINTS[:3]])
    alone_pushed = args.push_batch * sum(1 for e in load.events if e[0] == "pushes alone" and e[5] == "ok")
    summary_rows = [
        ["load phase wall time (s)", f"{wall:.1f}"],
        ["requests / errors / error rate", f"{total} / {errors} / {errors / max(total, 1):.2%}"],
        ["non-2xx answers and failures, classified", "; ".join(f"{k} x{n}" for k, n in sorted(error_classes.items()))
         or "none"],
        ["next/submit pairs answered 2xx (pairs/s)", f"{load_pairs} ({load_pairs / wall:.1f}/s)"],
        [f"production push: target {args.push_rate:.0f} samples/s as {args.push_batch}-sample batches every "
         f"{args.push_batch / args.push_rate:.2f} s, at most {args.pushers} in flight; achieved samples/s",
         f"{load_pushed / wall:.1f} ({load_pushed / wall / args.push_rate:.0%} of target)"
         + (f"; alone: {alone_pushed / walls['pushes alone']:.1f}" if "pushes alone" in walls else "")],
        ["push schedule lateness p50 / p95 / max (s)",
         f"{percentile(lateness, 0.5):.1f} / {percentile(lateness, 0.95):.1f} / {lateness[-1]:.1f}" if lateness else "-"],
        ["retrain (frozen), requested at t=0: finished during the load / status / request-to-finish (s)",
         f"{'yes' if train['finished_during_load'] else 'no'} / {train.get('status')} / "
         f"{fmt_ms(train.get('server_seconds'))}"],
        ["pending queue items at start / end of the load", f"{queue_start} / {queue_end}"],
        ["PostgreSQL lock waits: share of 1 s samples with a waiter / mean waiters",
         f"{locks['load']['samples_with_a_lock_wait'] / max(locks['load']['samples'], 1):.0%} / "
         f"{locks['load']['mean_lock_waiters']:.1f}"],
        ["integrity violations (sum of the checks below)", violations],
        ["load average (1/5/15 min) at start of the load", " / ".join(f"{v:.2f}" for v in loadavg_start)],
        ["load average (1/5/15 min) at end of the load", " / ".join(f"{v:.2f}" for v in loadavg_end)],
    ]
    checks, cpu_table, waits = detail_tables(integrity, cpu_share, cpu_s, locks)
    setup = {"gunicorn": f"annotator.wsgi, gthread, {args.web_workers} workers x {args.web_threads} threads",
             "celery": [stack.commands["celery-training"].split(" -m ", 1)[1],
                        stack.commands["celery-scoring"].split(" -m ", 1)[1]],
             "redis": f"own redis-server on 127.0.0.1:{args.redis_port}", "database": url.rsplit("/", 1)[1],
             "labeled": args.labeled, "unlabeled": args.unlabeled, "annotators": args.annotators,
             "think_s": args.think, "push_rate": args.push_rate, "push_batch": args.push_batch,
             "pushers": args.pushers, "duration_s": args.duration, "baseline_s": args.baseline, "setup_s": setup_s,
             "first_train_s": first_train_s, "warm_up_s": warm_s}
    notes = load_notes(args, setup)
    full = "\n\n".join([markdown_table(["measure", "value"], summary_rows), table,
                         "Each workload alone on the same stack, just before the load:", baseline,
                         "Latency while the retrain ran and after it finished:", retrain_split, checks, cpu_table, waits])
    payload = {"setup": setup, "walls_s": walls, "phases": phases, "requests": total, "errors": errors,
               "error_rate": errors / max(total, 1), "error_classes": dict(error_classes), "pairs_2xx": load_pairs,
               "pairs_per_s": load_pairs / wall, "push_samples_per_s": load_pushed / wall,
               "push_samples_per_s_alone": alone_pushed / walls["pushes alone"] if "pushes alone" in walls else None,
               "push_lateness_s": {"p50": percentile(lateness, 0.5), "p95": percentile(lateness, 0.95),
                                   "max": lateness[-1]} if lateness else None,
               "retrain": train, "queue_pending_start": queue_start, "queue_pending_end": queue_end,
               "integrity": integrity, "integrity_violations": violations, "cpu_share": cpu_share, "cpu_s": cpu_s,
               "loadavg_start": loadavg_start, "loadavg_end": loadavg_end, "locks": locks,
               "exceptions": Counter(load.exceptions).most_common(20),
               "timeline_30s": timeline([e for e in load.events if e[0] == "load"], args.push_batch)}
    if args.no_write:
        print(full + "\n\n" + notes)
    else:
        write_results("load", f"Load: {args.annotators} annotators and a production stream while a retrain runs", payload, full, notes)
    if violations:
        sys.exit(1)


if __name__ == "__main__":
    main()
