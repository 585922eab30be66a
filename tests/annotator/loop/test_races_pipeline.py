"""Races in the loop's own bookkeeping (services.snapshot, services.scoring, services.queue_policy and the
sweep), on real PostgreSQL (threads, each with its own connection) and real Redis: the training snapshot
against an annotation committed while it is read, the last scoring chunk delivered twice at once, and queue
rebuilds run twice at once or delivered again while one runs.

No worker runs here (``no_shared_worker``): the tests call the services the way two deliveries of a task
would, and count what reached the broker themselves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from annotator.models import Annotation, Example, ExampleScore, Job, ModelVersion, Project, QueueItem
from annotator.services import queue_policy, scoring
from annotator.services.annotations import annotation_create
from annotator.services.models import labels_since_last_training
from annotator.services.projects import project_update_settings
from annotator.services.recovery import jobs_recover
from annotator.services.snapshot import take_snapshot
from tests.annotator.threads import at_once
from tests.annotator.views import factories

LABELS = ["positive", "negative", "neutral"]
TIMEOUT = 60


def _in_threads(*targets: Callable[[], object]) -> None:
    at_once(*targets, timeout=TIMEOUT)


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The suite's Redis broker; what the test's services sent there is taken out again afterwards, so no
    worker of a later test runs it."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = {queue: set(client.lrange(queue, 0, -1)) for queue in ("default", "scoring")}
    yield client
    for queue, kept in before.items():
        for raw in client.lrange(queue, 0, -1):
            if raw not in kept:
                client.lrem(queue, 0, raw)


def _rebuilds_sent(broker: redis.Redis, train_job_id: int) -> int:
    count = 0
    for raw in broker.lrange("default", 0, -1):
        headers = json.loads(raw).get("headers", {})
        if headers.get("task") == "annotator.tasks.rebuild_queue" and f"({train_job_id}," in headers.get(
                "argsrepr", ""):
            count += 1
    return count


def _labeled_and_pool(project: Project, user: Any, *, pool: int) -> tuple[list[Example], list[Example]]:
    labeled = factories.import_examples(project, user, [f"Labeled review {i}" for i in range(6)], prefix="lab",
                                        labels=[LABELS[i % 2] for i in range(6)])
    unlabeled = factories.import_examples(project, user, [f"Pool review {i}: was it any good?" for i in range(pool)],
                                          prefix="pool")
    return labeled, unlabeled


# --- the snapshot ---------------------------------------------------------------------------------------------
def test_a_snapshot_racing_an_annotation_leaves_it_to_the_next_retrain(no_shared_worker, project, admin,
                                                                       annotator):
    # Given labeled examples and one more example an annotator is about to answer
    _, (late,) = _labeled_and_pool(project, admin, pool=1)
    answered: list[Annotation] = []
    started: list[bool] = []

    def answer_elsewhere() -> None:
        answered.append(annotation_create(example=late, user=annotator, labels=["neutral"]))

    def answer_after_the_labels_are_read(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if "annotator_examplelabel" in sql and not started:
            started.append(True)
            _in_threads(answer_elsewhere)  # committed before the snapshot reads anything else
        return result

    # When the answer commits right after the snapshot has read the current labels
    with connection.execute_wrapper(answer_after_the_labels_are_read):
        snapshot = take_snapshot(project)

    # Then the snapshot neither holds the answer nor claims to: the next automatic retrain counts it
    (annotation,) = answered
    assert late.id not in snapshot.example_ids
    assert snapshot.max_annotation_id < annotation.id
    ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY,
                                snapshot={"max_annotation_id": snapshot.max_annotation_id})
    assert labels_since_last_training(project) == 1


# --- the last chunk, twice --------------------------------------------------------------------------------------
class _Prediction:
    def __init__(self, n: int) -> None:
        self.probs = np.tile([0.5, 0.3, 0.2], (n, 1))
        self.labels = ["positive"] * n
        self.embeddings = np.zeros((n, 4), dtype=np.float32)


class _BothDeliveriesScoring:
    """A predictor that holds each delivery until both are scoring: both have passed the check that the
    scoring job is not finished yet, as two deliveries of one message running side by side have."""

    embedding_key = "stand-in"  # the key its pool vectors are saved under (frozen-mode scoring)

    def __init__(self, deliveries: int) -> None:
        self.barrier = threading.Barrier(deliveries)

    def predict(self, texts: list[str], **_: Any) -> _Prediction:
        self.barrier.wait(timeout=TIMEOUT)
        return _Prediction(len(texts))


def test_the_last_chunk_delivered_twice_at_the_same_time_gives_one_finish_and_one_rebuild(
        no_shared_worker, broker, project, admin, monkeypatch):
    # Given a scoring job with every chunk but the last one scored
    _, pool = _labeled_and_pool(project, admin, pool=4)
    train = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                               started_at=timezone.now(), heartbeat_at=timezone.now())
    version = factories.model_version(project, 1)
    ModelVersion.objects.filter(pk=version.pk).update(job=train)
    Job.objects.filter(pk=train.pk).update(result={"model_version": 1, "model_version_id": version.id})
    chunks = [[pool[0].id, pool[1].id], [pool[2].id, pool[3].id]]
    score = Job.objects.create(project=project, kind=Job.Kind.SCORE, status=Job.Status.RUNNING, parent=train,
                               params={"model_version_id": version.id, "chunks": 2, "chunk_ids": chunks},
                               result={"done": [0], "done_chunks": 1}, started_at=timezone.now(),
                               heartbeat_at=timezone.now())
    predictor = _BothDeliveriesScoring(deliveries=2)
    monkeypatch.setattr(scoring, "predictor_for", lambda version: predictor)
    decisions: list[int] = []
    decide = scoring.decide_promotion
    monkeypatch.setattr(scoring, "decide_promotion", lambda version: decisions.append(version.pk) or decide(version))

    # When the last chunk is delivered twice and both deliveries run at once
    def deliver() -> None:
        scoring.score_chunk(score.pk, 1, chunks[1])

    _in_threads(deliver, deliver)

    # Then scoring finished once: one promotion decision, one queue rebuild sent
    score.refresh_from_db()
    train.refresh_from_db()
    assert score.status == Job.Status.SUCCEEDED and score.result["done"] == [0, 1]
    assert decisions == [version.pk]
    assert _rebuilds_sent(broker, train.pk) == 1
    assert train.result["promotion"] == "first version" and train.result["promoted"] is True
    assert ExampleScore.objects.filter(model_version=version).count() == 2  # the chunk scored twice, stored once


# --- the rebuild --------------------------------------------------------------------------------------------------
def _scored_train_job(project: Project, admin: Any, *, heartbeat_at: Any = None) -> tuple[Job, ModelVersion]:
    """A train job whose scoring succeeded and whose queue rebuild is due: a served version with scores for
    twelve unlabeled examples."""
    project_update_settings(project=project, settings={"queue_size": 8, "diversity": False,
                                                       "queue_mix": {"uncertain": 1.0}})
    _, pool = _labeled_and_pool(project, admin, pool=12)
    version = factories.model_version(project, 1, serving=True)
    # No example kept for the holdout (cut 0), so all twelve can be queued as uncertain whatever their ids.
    version.metrics["holdout"]["cut"] = 0.0
    version.save(update_fields=["metrics"])
    train = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.RUNNING,
                               started_at=timezone.now(), heartbeat_at=heartbeat_at or timezone.now(),
                               result={"model_version": 1, "model_version_id": version.id, "promoted": True})
    ModelVersion.objects.filter(pk=version.pk).update(job=train)
    Job.objects.create(project=project, kind=Job.Kind.SCORE, status=Job.Status.SUCCEEDED, parent=train,
                       params={"model_version_id": version.id}, finished_at=timezone.now())
    ExampleScore.objects.bulk_create([
        ExampleScore(example=example, model_version=version, probs=[0.4, 0.35, 0.25], predicted=["positive"],
                     confidence=0.4, entropy=1.0 - i / 20, margin=0.05, label_quality=None, is_issue=False)
        for i, example in enumerate(pool)])
    return train, version


def _assert_one_rebuild(project: Project, train: Job, version: ModelVersion) -> None:
    train.refresh_from_db()
    pending = QueueItem.objects.filter(project=project, status=QueueItem.Status.PENDING, model_version=version)
    assert not QueueItem.objects.filter(model_version=version, status=QueueItem.Status.CANCELLED).exists(), \
        "a rebuild cancelled the items another rebuild of the same version had just queued"
    assert train.status == Job.Status.SUCCEEDED
    assert pending.count() == sum(train.result["queue"].values()) == 8
    rebuilds = Job.objects.filter(parent=train, kind=Job.Kind.QUEUE_REBUILD)
    assert list(rebuilds.values_list("status", flat=True)) == [Job.Status.SUCCEEDED]


def test_two_rebuilds_at_once_write_one_queue(no_shared_worker, project, admin, monkeypatch):
    # Given a train job whose queue is due to be rebuilt
    train, version = _scored_train_job(project, admin)
    both = threading.Barrier(2)
    picking: set[int] = set()
    pick = queue_policy.pick_items

    def pick_when_both_arrived(*args: Any, **kwargs: Any) -> Any:
        picking.add(threading.get_ident())
        both.wait(timeout=TIMEOUT)
        return pick(*args, **kwargs)

    monkeypatch.setattr(queue_policy, "pick_items", pick_when_both_arrived)

    # When two deliveries of the rebuild run at once (a delivery that does not pick arrives when it returns)
    def deliver() -> None:
        queue_policy.rebuild_queue(train.pk)
        if threading.get_ident() not in picking:
            both.wait(timeout=TIMEOUT)

    _in_threads(deliver, deliver)

    # Then one of them rebuilt the queue and the other left it alone
    _assert_one_rebuild(project, train, version)


def test_a_rebuild_cancels_expired_leases_of_older_versions_and_keeps_live_ones(no_shared_worker, project, admin,
                                                                               annotator):
    # Given items of an older version: one leased by someone whose lease expired, one leased and still live
    train, version = _scored_train_job(project, admin)
    older = factories.model_version(project, 0)
    examples = factories.import_examples(project, admin, ["an old expired lease", "an old live lease"], prefix="old")
    now = timezone.now()
    expired, live = (QueueItem.objects.create(
        project=project, example=example, reason=QueueItem.Reason.UNCERTAIN, model_version=older,
        status=QueueItem.Status.LEASED, leased_by=annotator, lease_expires_at=now + offset)
        for example, offset in zip(examples, (timedelta(minutes=-1), timedelta(minutes=10)), strict=True))

    # When the new version's queue is rebuilt
    queue_policy.rebuild_queue(train.pk)

    # Then the expired lease gave way with the pending items; the live one stays with its annotator
    expired.refresh_from_db()
    live.refresh_from_db()
    assert expired.status == QueueItem.Status.CANCELLED
    assert live.status == QueueItem.Status.LEASED


def test_a_rebuild_delivered_again_while_it_runs_changes_nothing_and_the_sweeper_leaves_it(
        no_shared_worker, broker, project, admin, monkeypatch):
    # Given a train job whose last beat (from finishing the scoring) is older than the sweeper waits for
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 30)
    train, version = _scored_train_job(project, admin, heartbeat_at=stale)
    seen: dict[str, Any] = {}
    stability = queue_policy.version_stability_update

    def meanwhile(*, version: ModelVersion) -> Any:
        if not seen:
            # While the rebuild works: the sweeper of some worker runs, and the message is delivered again.
            seen["swept"] = jobs_recover()
            seen["sent"] = _rebuilds_sent(broker, train.pk)
            _in_threads(lambda: queue_policy.rebuild_queue(train.pk))
        return stability(version=version)

    monkeypatch.setattr(queue_policy, "version_stability_update", meanwhile)

    # When the rebuild runs
    queue_policy.rebuild_queue(train.pk)

    # Then the sweeper saw it alive and sent nothing, and the second delivery did nothing
    assert seen["sent"] == 0, "the sweeper took a running rebuild for dead and sent it again"
    _assert_one_rebuild(project, train, version)

    # And a delivery after it finished does nothing either
    before = list(QueueItem.objects.filter(project=project).order_by("id").values_list("id", "status"))
    queue_policy.rebuild_queue(train.pk)
    assert list(QueueItem.objects.filter(project=project).order_by("id").values_list("id", "status")) == before
    assert Job.objects.filter(parent=train, kind=Job.Kind.QUEUE_REBUILD).count() == 1


def test_the_sweeper_decides_a_promotion_a_dead_worker_left_undecided(no_shared_worker, broker, project, admin):
    # Given a first version whose scoring job finished, but whose worker died before deciding promotion
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 30)
    train, version = _scored_train_job(project, admin, heartbeat_at=stale)
    Project.objects.filter(pk=project.pk).update(serving_version=None)
    Job.objects.filter(pk=train.pk).update(result={"model_version": 1, "model_version_id": version.id})

    # When the sweeper runs
    jobs_recover()

    # Then the version is decided (and, being the first, serves), the decision is recorded, the rebuild sent
    version.refresh_from_db()
    train.refresh_from_db()
    assert version.comparison["decision"] == "first version"
    assert Project.objects.get(pk=project.pk).serving_version_id == version.id
    assert train.result["promotion"] == "first version" and train.result["promoted"] is True
    assert _rebuilds_sent(broker, train.pk) == 1
