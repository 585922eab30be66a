"""The scenarios of bench/faults.py: each breaks one part of the stack while a user works and returns rows
(what happened, what the user saw, what was lost)."""

from __future__ import annotations

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
from typing import Any

import psycopg
import requests

from bench.faults_stack import (
    CLASSES,
    DISK,
    STALE_SECONDS,
    VAR,
    WEB_APP,
    Api,
    Row,
    Stack,
    annotations_of,
    labeled,
    row,
)
from bench.stack import ROOT, wait_for


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
