"""More faults the loop must survive (see test_faults.py for the first ones): a worker killed while it
scores a chunk, Redis restarted during production pushes, the database connection of a bulk import
terminated, and an artifact directory that is full or read-only while a version trains.

Each test says what the user saw and checks that nothing they had written was lost. bench/faults.py runs
the same faults at larger sizes against gunicorn and prints what happened.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import override_settings
from kombu import Connection
from rest_framework.test import APIClient

from annotator import serving
from annotator.models import (
    Annotation,
    DriftWindow,
    Example,
    ExampleLabel,
    ExampleScore,
    Job,
    ModelVersion,
    Project,
    QueueItem,
)
from tests.annotator.loop.conftest import database_url, wait_idle
from tests.annotator.loop.corpus import articles, labeled_rows
from tests.annotator.loop.polling import poll_job, wait_until
from tests.annotator.loop.steps import TRAIN_TIMEOUT, import_rows, start_training, train
from tests.annotator.loop.test_faults import celery_broker
from tests.annotator.loop.workers import WorkerProcess, Workers, broker_busy

CLASSES = ["business", "politics", "sports"]
CHUNK = 100


@cache
def _sentences() -> tuple[str, ...]:
    """Sentences of articles 8..120 of each topic (the labeled rows take articles 0..8): short texts that
    score fast."""
    out = []
    for label in CLASSES:
        for text in articles(label, 8, 120):
            out.extend(s for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s) <= 300)
    return tuple(out)


def sentence_rows(n: int, prefix: str = "s") -> list[dict[str, str]]:
    texts = _sentences()
    assert len(texts) >= n, f"the corpus has {len(texts)} sentences; {n} asked"
    return [{"external_id": f"{prefix}-{i}", "text": text} for i, text in enumerate(texts[:n])]


# --- a worker killed while it scores ------------------------------------------------------------------------
_TASK_LINE = re.compile(r"Task annotator\.tasks\.score_chunk\[([0-9a-f-]+)\] (received|succeeded|raised|retry)")


def chunks_in_flight(worker: WorkerProcess) -> set[str]:
    """Ids of score_chunk deliveries the worker received and has not finished (per its log)."""
    received, ended = set(), set()
    for task_id, event in _TASK_LINE.findall(worker.log_text()):
        (received if event == "received" else ended).add(task_id)
    return received - ended


def restore_unacked(url: str) -> int:
    """Put deliveries of dead workers back in their queues, as Redis does once the visibility timeout
    (6 h in settings) has passed. Returns how many there were."""
    with Connection(url, transport_options={"visibility_timeout": 0}) as connection:
        client = connection.default_channel.client
        count = client.hlen("unacked")
        connection.default_channel.qos.restore_visible(num=100)
    return count


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_scoring_a_chunk_loses_no_score_and_no_label(no_shared_worker, loop_project, as_admin):
    # Given two workers (as in production) and a project whose pool takes three scoring chunks (of 100
    # examples here, 1,000 by default)
    first, second = (no_shared_worker.new(SCORE_CHUNK_SIZE=str(CHUNK)).start() for _ in range(2))
    project = loop_project(labels=CLASSES, max_length=32, queue_size=50)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
    pool = import_rows(as_admin, project.id, sentence_rows(3 * CHUNK))
    annotations_before = list(Annotation.objects.filter(example__project=project).values_list("id", "labels"))
    logs = lambda: f"--- first ---\n{first.log_tail()}\n--- second ---\n{second.log_tail()}"  # noqa: E731

    # When the worker that is scoring a chunk is SIGKILLed (main process and pool at once, as when its
    # machine dies) while the other worker goes on
    job = start_training(as_admin, project.id, mode="frozen")

    def busy_worker() -> WorkerProcess | None:
        score = Job.objects.filter(parent_id=job["id"], kind=Job.Kind.SCORE).first()
        if score is None or score.status in Job.FINISHED:
            return None
        busy = [w for w in (first, second) if chunks_in_flight(w)]
        return busy[0] if busy else None

    victim = wait_until(busy_worker, timeout=TRAIN_TIMEOUT, what="a worker scoring a chunk", interval=0.1,
                        diagnostics=logs)
    survivor = second if victim is first else first
    score_job = Job.objects.get(parent_id=job["id"], kind=Job.Kind.SCORE)
    assert score_job.params["chunks"] == 3
    victim.kill()

    # Then the other worker scores the rest, the sweeper re-sends the lost chunk once its heartbeat is
    # stale, and the training job succeeds
    body, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=survivor.log_tail)
    assert body["status"] == "succeeded", body
    score_job.refresh_from_db()
    assert score_job.status == Job.Status.SUCCEEDED and score_job.result["done"] == [0, 1, 2], score_job.result

    # and every pool example has its score of the new version
    version = ModelVersion.objects.get(pk=body["result"]["model_version_id"])
    scored = set(ExampleScore.objects.filter(model_version=version, example_id__in=pool)
                 .values_list("example_id", flat=True))
    assert scored == set(pool)
    assert not Example.objects.filter(id__in=pool).exclude(latest_score__model_version=version).exists()

    # and the queue was rebuilt once, from that version, with one open item per example
    rebuilds = Job.objects.filter(parent_id=job["id"], kind=Job.Kind.QUEUE_REBUILD)
    assert [r.status for r in rebuilds] == [Job.Status.SUCCEEDED]
    pending = list(QueueItem.objects.filter(project=project, status=QueueItem.Status.PENDING)
                   .values_list("example_id", "model_version_id"))
    assert pending and len({e for e, _ in pending}) == len(pending)
    assert len(pending) == sum(rebuilds[0].result["created"].values())
    assert {v for _, v in pending} == {version.id}

    # and no label was lost or changed
    assert list(Annotation.objects.filter(example__project=project).values_list("id", "labels")) == annotations_before

    # When Redis hands the killed worker's delivery out again (its visibility timeout passed)
    assert restore_unacked(survivor.broker_url) >= 1

    # Then the late duplicate does nothing: no second rebuild, the same scores and queue
    wait_idle(survivor)
    assert "score_chunk" in survivor.log_text() and broker_busy(survivor.broker_url) == 0
    assert Job.objects.filter(parent_id=job["id"], kind=Job.Kind.QUEUE_REBUILD).count() == 1
    assert ExampleScore.objects.filter(model_version=version, example_id__in=pool).count() == len(pool)
    assert QueueItem.objects.filter(project=project, status=QueueItem.Status.PENDING).count() == len(pending)
    survivor.stop()


# --- the artifact directory full or read-only ----------------------------------------------------------------
ARTIFACT_DISK_MB = 120  # one version (~90 MB of weights) fits, a second does not


@pytest.fixture
def small_artifact_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real small disk for ARTIFACT_DIR: a tmpfs of ARTIFACT_DISK_MB when we may mount one (root), so the
    second version's weights hit ENOSPC; as another user, a directory we then make read-only (EACCES).
    Yields the directory and what will break ("full" or "unwritable")."""
    path = tmp_path / "artifacts"
    path.mkdir()
    if os.geteuid() != 0:
        yield path, "unwritable"
        for directory in [path, *path.rglob("*")]:
            if directory.is_dir():
                directory.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={ARTIFACT_DISK_MB}m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a small disk: {mounted.stderr.strip()}")
    try:
        yield path, "full"
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def disk_worker(no_shared_worker: Workers, small_artifact_disk: tuple[Path, str]) -> Iterator[WorkerProcess]:
    """A worker writing its versions to the small disk, which this process also serves from."""
    path, _ = small_artifact_disk
    worker = no_shared_worker.new(ARTIFACT_DIR=str(path)).start()
    with override_settings(ARTIFACT_DIR=path):
        yield worker
    worker.stop()


def predict(client: APIClient, project_id: int) -> dict:
    serving._loaded.clear()  # read the version's files from the disk now, not from this process's cache
    response = client.post(f"/api/v1/projects/{project_id}/predict/",
                           {"texts": [articles("sports", 100, 101)[0], articles("business", 100, 101)[0]]},
                           format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_full_or_read_only_artifact_directory_fails_the_job_cleanly_and_the_serving_version_stays(
    disk_worker, small_artifact_disk, loop_project, as_admin,
):
    path, fault = small_artifact_disk
    # Given a project whose version 1 serves from the small disk
    project = loop_project(labels=CLASSES, max_length=32, queue_size=10)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
    import_rows(as_admin, project.id, sentence_rows(30))
    train(as_admin, project.id, diagnostics=disk_worker.log_tail, mode="frozen")
    before = predict(as_admin, project.id)
    assert before["model_version"] == 1
    annotations_before = list(Annotation.objects.filter(example__project=project).values_list("id", "labels"))

    # When the disk has no room for another version (or, for a non-root runner, is read-only) and a
    # reviewer trains again
    if fault == "unwritable":
        (path / f"project-{project.id}").chmod(0o555)
    body, _ = poll_job(as_admin, start_training(as_admin, project.id, mode="frozen")["id"], timeout=TRAIN_TIMEOUT,
                       diagnostics=disk_worker.log_tail)

    # Then the job fails with a message that names the problem and where
    assert body["status"] == "failed", body
    reason = "No space left on device" if fault == "full" else "Permission denied"
    assert reason in body["message"] and "ARTIFACT_DIR" in body["message"], body["message"]
    assert "serving version is unchanged" in body["message"]

    # and the failed version is marked failed, points at no files, and left no directory behind
    versions = {v["number"]: v for v in as_admin.get(f"/api/v1/projects/{project.id}/models/").json()["results"]}
    assert versions[1]["status"] == "ready" and versions[1]["promoted"] is True
    assert versions[2]["status"] == "failed" and versions[2]["promoted"] is False
    assert ModelVersion.objects.get(project=project, number=2).artifact_path == ""
    assert sorted(p.name for p in (path / f"project-{project.id}").iterdir()) == ["v1"]

    # and version 1 still serves, read from the same disk, with the same answers; no label changed
    after = predict(as_admin, project.id)
    assert after == before
    assert list(Annotation.objects.filter(example__project=project).values_list("id", "labels")) == annotations_before


# --- Redis restarted during production pushes ----------------------------------------------------------------
WINDOW = 10


def push_samples(client: APIClient, project_id: int, prefix: str, start: int) -> tuple[list[int], float]:
    """POST one window of production samples; returns their ids and the seconds the request took."""
    texts = [articles(label, i, i + 1)[0] for i in range(start, start + 4) for label in CLASSES][:WINDOW]
    rows = [{"text": text, "external_id": f"{prefix}-{i}"} for i, text in enumerate(texts)]
    began = time.monotonic()
    response = client.post(f"/api/v1/projects/{project_id}/samples/", rows, format="json")
    took = time.monotonic() - began
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["model_version"] == 1 and len(body["predictions"]) == WINDOW
    assert all(p["label"] in CLASSES for p in body["predictions"])
    return body["ids"], took


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pushes_during_a_redis_restart_are_stored_and_drift_windows_catch_up_when_it_is_back(
    private_worker, private_redis, loop_project, as_admin,
):
    with celery_broker(private_redis.url):
        # Given a project whose version 1 serves, with windows of ten samples, and a first window measured
        project = loop_project(labels=CLASSES, max_length=32, drift_window_size=WINDOW, queue_size=0)
        import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 8))
        train(as_admin, project.id, diagnostics=private_worker.log_tail, mode="frozen")
        pushed, _ = push_samples(as_admin, project.id, "before", 60)
        windows = lambda n: DriftWindow.objects.filter(project=project).count() >= n  # noqa: E731
        wait_until(lambda: windows(1), timeout=60, what="the first drift window", diagnostics=private_worker.log_tail)

        # When Redis stops and two more windows of samples are pushed
        private_redis.stop()
        assert as_admin.get("/api/v1/health/").json()["broker"] == "down"
        during = []
        for batch in range(2):
            ids, took = push_samples(as_admin, project.id, f"during{batch}", 70 + 4 * batch)
            during += ids
            # Then each push is stored and answered with predictions, promptly, as if nothing happened
            assert took < 15, f"a push took {took:.1f}s with Redis down"
        assert DriftWindow.objects.filter(project=project).count() == 1  # the drift check could not be sent

        # When Redis is back (and nothing more is pushed)
        private_redis.start()

        # Then the worker's sweeper measures the two windows pushed during the outage
        wait_until(lambda: windows(3), timeout=60, what="the windows of the outage",
                   diagnostics=private_worker.log_tail)

        # and the first push after the restart goes through the same way
        after, _ = push_samples(as_admin, project.id, "after", 80)
        wait_until(lambda: windows(4), timeout=60, what="the window after the restart",
                   diagnostics=private_worker.log_tail)

    # and no sample that got a 201 was lost: each is stored, scored by version 1, in exactly one window
    everything = pushed + during + after
    stored = Example.objects.filter(id__in=everything, source="production", latest_score__model_version__number=1)
    assert stored.count() == len(everything) == 4 * WINDOW
    cut = list(DriftWindow.objects.filter(project=project).order_by("sequence")
               .values_list("sequence", "first_example_id", "last_example_id", "n"))
    assert [(s, n) for s, _, _, n in cut] == [(0, WINDOW), (1, WINDOW), (2, WINDOW), (3, WINDOW)]
    assert [(first, last) for _, first, last, _ in cut] == [
        (min(ids), max(ids)) for ids in (pushed, during[:WINDOW], during[WINDOW:], after)]


# --- the database connection of a bulk import terminated -----------------------------------------------------
IMPORT_ROWS = 10_000
NOTHING = {"examples": 0, "annotations": 0, "current labels": 0, "example_count": 0}
EVERYTHING = {"examples": IMPORT_ROWS, "annotations": IMPORT_ROWS // 2, "current labels": IMPORT_ROWS // 2,
              "example_count": IMPORT_ROWS}


def import_body(n: int) -> list[dict]:
    """n rows, every other one labeled (so the import writes examples, annotations and current labels)."""
    return [{"external_id": f"bulk-{i}", "text": f"bulk import row {i}: quarterly figures beat the forecast",
             **({"label": CLASSES[i % 3]} if i % 2 == 0 else {})} for i in range(n)]


def rows_of(project_id: int) -> dict[str, int]:
    return {"examples": Example.objects.filter(project_id=project_id).count(),
            "annotations": Annotation.objects.filter(example__project_id=project_id).count(),
            "current labels": ExampleLabel.objects.filter(example__project_id=project_id).count(),
            "example_count": Project.objects.get(pk=project_id).example_count}


def waiting_on_lock(operator: psycopg.Connection, query: str) -> int | None:
    """The backend whose statement starts with ``query`` and waits for a lock. (``operator`` runs outside a
    transaction: pg_stat_activity is read once per transaction.)"""
    found = operator.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock' AND query LIKE %s", [query + "%"]).fetchall()
    return found[0][0] if len(found) == 1 else None


def in_thread(work: Callable[[], object], out: dict[str, object], name: str) -> threading.Thread:
    """Run ``work`` on its own database connection; its result or exception lands in ``out[name]``."""

    def run() -> None:
        try:
            out[name] = work()
        except Exception as error:  # noqa: BLE001 - the test inspects it
            out[name] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@contextmanager
def import_terminated_inside_its_transaction() -> Iterator[Callable[[], None]]:
    """Hold the annotation table so an import stops inside its transaction (its examples written, its
    annotations not yet); the yielded function terminates the waiting import's backend, as an operator's
    pg_terminate_backend or a failover would, and lets go of the table."""
    with psycopg.connect(database_url()) as holder, psycopg.connect(database_url(), autocommit=True) as operator:
        holder.execute("LOCK TABLE annotator_annotation IN SHARE MODE")

        def terminate() -> None:
            pid = wait_until(lambda: waiting_on_lock(operator, 'COPY "annotator_annotation"'), timeout=60,
                             what="the import to wait at its annotations")
            assert operator.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0] is True
            holder.rollback()

        yield terminate


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_database_connection_is_terminated_answers_503_and_writes_nothing(
    loop_project, api_client, admin,
):
    # Given a project and ten thousand rows to import
    project = loop_project(labels=CLASSES)
    body = import_body(IMPORT_ROWS)
    url = f"/api/v1/projects/{project.id}/examples/"
    client = api_client(admin)
    client.raise_request_exception = False
    answers: dict[str, object] = {}

    # When the database connection of the import is terminated inside its transaction
    with import_terminated_inside_its_transaction() as terminate:
        thread = in_thread(lambda: client.post(url, body, format="json"), answers, "import")
        terminate()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the request hangs"

    # Then the client gets a 503 that says to send the request again, not a 500
    response = answers["import"]
    assert response.status_code == 503, response.content
    assert response["Retry-After"]
    [error] = response.json()["errors"]
    assert "database connection was lost" in error["message"] and "again" in error["message"], error

    # and nothing of the import was written
    assert rows_of(project.id) == NOTHING

    # When the client sends the same request again, everything is imported once
    response = api_client(admin).post(url, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["created"] == IMPORT_ROWS
    assert rows_of(project.id) == EVERYTHING


@pytest.mark.django_db(transaction=True)
def test_the_import_command_whose_database_connection_is_terminated_says_so_and_writes_nothing(
    loop_project, admin, tmp_path,
):
    # Given a CSV file of ten thousand rows
    project = loop_project(labels=CLASSES)
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["external_id", "text", "label"])
        writer.writeheader()
        writer.writerows(import_body(IMPORT_ROWS))
    command = lambda: call_command("import_examples", str(path), project=project.id, user=admin.username,  # noqa: E731
                                   stdout=io.StringIO(), stderr=io.StringIO())
    outcome: dict[str, object] = {}

    # When the command's database connection is terminated inside its transaction
    with import_terminated_inside_its_transaction() as terminate:
        thread = in_thread(command, outcome, "command")
        terminate()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the command hangs"

    # Then it stops with a message that says what happened and what to do, and wrote nothing
    error = outcome["command"]
    assert isinstance(error, CommandError), repr(error)
    assert "database connection was lost" in str(error) and "nothing was imported" in str(error)
    assert "Run the command again" in str(error)
    assert rows_of(project.id) == NOTHING

    # and run again, it imports every row
    command()
    assert rows_of(project.id) == EVERYTHING


@pytest.mark.django_db(transaction=True)
def test_two_imports_racing_on_the_same_rows_answer_201_and_409_and_write_each_row_once(
    loop_project, api_client, admin,
):
    # Given two clients importing the same new rows at the same moment (the first one held inside its
    # transaction, so the second finds none of its rows yet and inserts them too)
    project = loop_project(labels=CLASSES)
    body = import_body(1000)
    url = f"/api/v1/projects/{project.id}/examples/"
    answers: dict[str, object] = {}

    def post() -> object:
        client = api_client(admin)
        client.raise_request_exception = False
        return client.post(url, body, format="json")

    with psycopg.connect(database_url()) as holder, psycopg.connect(database_url(), autocommit=True) as operator:
        holder.execute("LOCK TABLE annotator_annotation IN SHARE MODE")
        first = in_thread(post, answers, "first")
        wait_until(lambda: waiting_on_lock(operator, 'COPY "annotator_annotation"'), timeout=60,
                   what="the first import to wait")
        second = in_thread(post, answers, "second")
        wait_until(lambda: waiting_on_lock(operator, 'COPY "annotator_example"'), timeout=60,
                   what="the second import to wait on the first one's rows")
        # When the first import goes on and commits
        holder.rollback()
        first.join(timeout=60)
        second.join(timeout=60)

    # Then the first client gets 201 and the second a 409 that says to send it again, not a 500
    assert answers["first"].status_code == 201, answers["first"].content
    assert answers["second"].status_code == 409, answers["second"].content
    assert "send the request again" in answers["second"].json()["errors"][0]["message"]
    # and every row is there once; sent again, the second import finds them all unchanged
    assert rows_of(project.id) == {"examples": 1000, "annotations": 500, "current labels": 500, "example_count": 1000}
    again = api_client(admin).post(url, body, format="json")
    assert again.status_code == 201 and again.json()["unchanged"] == 1000, again.content
    assert rows_of(project.id)["annotations"] == 500
