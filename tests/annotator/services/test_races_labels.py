"""Races on labels and leases, on real PostgreSQL with threads, and ``__in`` lists that fit every database.

Each race test makes the two transactions overlap at the point where the old code went wrong: a hook waits
(a short while) for the other thread to reach the same point. Where the code takes a lock before that
point, the other thread cannot get there: the hook's wait runs out, and the first transaction goes on
alone, which is the serialisation the lock is for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLite
from django.utils import timezone

from annotator.models import Annotation, Example, ExampleLabel, ModelVersion, Project, QueueItem, Role
from annotator.selectors import consensus, export, health
from annotator.services import annotations as annotation_services
from annotator.services import queue as queue_services
from annotator.services.annotations import refresh_current_labels
from annotator.services.examples import examples_import
from annotator.services.projects import member_set
from annotator.services.queue import queue_add, queue_add_many, queue_lease, queue_submit

# How long a hook waits for the other thread to reach the racy point before going on alone.
MEET_SECONDS = 2.0


def run_together(*calls: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run the calls in threads started at once; their results (in order) and the errors they raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            start.wait(timeout=30)
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results, errors


@contextmanager
def meeting_point(owner: Any, name: str, parties: int = 2) -> Iterator[None]:
    """Make ``owner.name`` wait (up to MEET_SECONDS) until ``parties`` threads call it, then run it."""
    real = getattr(owner, name)
    own = name in vars(owner)  # a module's function, or a method looked up through the class
    meet = threading.Barrier(parties)

    def wait_then_call(*args: Any, **kwargs: Any) -> Any:
        # A broken barrier: the other thread is held elsewhere (by a lock), so this one goes on alone.
        with suppress(threading.BrokenBarrierError):
            meet.wait(timeout=MEET_SECONDS)
        return real(*args, **kwargs)

    setattr(owner, name, wait_then_call)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, real)
        else:
            delattr(owner, name)


@pytest.fixture
def overlap_project(make_project, admin, annotator, make_user) -> Project:
    """Two annotators, anna and bob, and every item answered by two people."""
    project = make_project(admin, settings={"overlap": 2}, members={annotator: Role.ANNOTATOR})
    member_set(project=project, username=make_user("bob").username, role=Role.ANNOTATOR)
    return project


# --- 1. concurrent submits with overlap ---------------------------------------------------------------------
@pytest.mark.parametrize("answers", [("positive", "positive"), ("positive", "negative")], ids=["agree", "differ"])
@pytest.mark.django_db(transaction=True)
def test_two_people_submitting_one_example_at_once_leave_one_current_label(
    overlap_project, admin, annotator, make_examples, answers,
):
    # Given anna and bob each hold one slot of the same example
    project = overlap_project
    bob = project.memberships.get(user__username="bob").user
    [example] = make_examples(project, admin, [{"external_id": "e1", "text": "Both will answer this"}])
    queue_add(project=project, examples=[example], reason=QueueItem.Reason.UNCERTAIN)
    [anna_item] = queue_lease(project=project, user=annotator, n=1)
    [bob_item] = queue_lease(project=project, user=bob, n=1)
    assert {anna_item.slot, bob_item.slot} == {0, 1}
    # When they submit at the same time: both have written their answer before either refreshes the current
    # label, and they read the example's votes at the same moment, unless a lock keeps one out
    with meeting_point(annotation_services, "refresh_current_labels"), meeting_point(annotation_services, "votes_of"):
        _results, errors = run_together(
            lambda: queue_submit(user=annotator, item_id=anna_item.id, data={"label": answers[0]}),
            lambda: queue_submit(user=bob, item_id=bob_item.id, data={"label": answers[1]}),
        )

    # Then both answers are recorded (no IntegrityError) and the single-label example has one current label:
    # the agreed one, or (a tie) the later answer
    assert not errors, errors
    answers_given = list(Annotation.objects.filter(example=example).order_by("id").values_list("labels", flat=True))
    assert sorted(answers_given) == sorted([[answers[0]], [answers[1]]])
    current = list(ExampleLabel.objects.filter(example=example).values_list("label__name", flat=True))
    assert current == answers_given[-1]
    assert QueueItem.objects.filter(example=example, status=QueueItem.Status.DONE).count() == 2


# --- 2. leases: one user's concurrent leases with overlap; expiry without waiting --------------------------
@pytest.mark.django_db(transaction=True)
def test_two_leases_by_one_user_at_once_never_take_both_slots_of_an_example(
    overlap_project, admin, annotator, make_examples,
):
    # Given an example queued under two reasons (slot 0 uncertain, slot 1 random), behind other random items,
    # so that a lease of one item locks slot 0 and leaves slot 1 free
    project = overlap_project
    shared, *others = make_examples(
        project, admin, [{"external_id": f"x{i}", "text": f"Queued text {i}"} for i in range(3)])
    queue_add_many(project=project, reason="uncertain", items=[(shared.id, 1.0, "")], slots=1)
    queue_add_many(project=project, reason="random", items=[(e.id, 5.0, "") for e in others], slots=1)
    queue_add_many(project=project, reason="random", items=[(shared.id, 0.0, "")], slots=2)
    assert QueueItem.objects.filter(example=shared).count() == 2
    # Both leases pick their items at the same moment, unless a lock keeps one out.
    # When anna leases from two tabs at once
    with meeting_point(queue_services, "interleave"):
        results, errors = run_together(
            lambda: queue_lease(project=project, user=annotator, n=1),
            lambda: queue_lease(project=project, user=annotator, n=10),
        )

    # Then she holds at most one slot of each example
    assert not errors, errors
    held = list(QueueItem.objects.filter(leased_by=annotator, status=QueueItem.Status.LEASED)
                .values_list("example_id", flat=True))
    assert held, "she got nothing"
    assert len(held) == len(set(held)), f"two slots of one example leased to one annotator: {results}"


@pytest.mark.django_db(transaction=True)
def test_a_lease_does_not_wait_for_another_lease_to_release_expired_leases(
    project, admin, annotator, make_user, make_examples, monkeypatch,
):
    # Given ten items whose leases (by someone gone) expired, and two annotators
    bob = make_user("bob")
    member_set(project=project, username=bob.username, role=Role.ANNOTATOR)
    examples = make_examples(project, admin, [{"external_id": f"x{i}", "text": f"Queued text {i}"} for i in range(10)])
    queue_add(project=project, examples=examples, reason=QueueItem.Reason.UNCERTAIN)
    QueueItem.objects.filter(project=project).update(
        status=QueueItem.Status.LEASED, leased_by=make_user("gone"), lease_expires_at=timezone.now() - timedelta(minutes=1))
    # anna's lease stops, transaction open, once it has picked its candidates
    paused, resume = threading.Event(), threading.Event()
    real_interleave = queue_services.interleave

    def pause_anna(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "anna":
            paused.set()
            resume.wait(timeout=15)
        return real_interleave(*args, **kwargs)

    monkeypatch.setattr(queue_services, "interleave", pause_anna)
    anna_got: list[QueueItem] = []

    def anna_leases() -> None:
        try:
            anna_got.extend(queue_lease(project=project, user=annotator, n=1))
        finally:
            connection.close()

    anna = threading.Thread(target=anna_leases, name="anna")
    anna.start()
    try:
        assert paused.wait(timeout=30), "anna's lease never got to picking items"

        # When bob leases while anna's lease is still open (a lock wait of more than 3 s fails his lease)
        def bob_leases() -> list[QueueItem]:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")
            return queue_lease(project=project, user=bob, n=2)

        [bob_got], errors = run_together(bob_leases)
    finally:
        resume.set()
        anna.join(timeout=30)

    # Then bob got two of the expired items at once, and anna hers; nobody got the same item
    assert not errors, errors
    assert len(bob_got) == 2 and len(anna_got) == 1
    assert {i.id for i in bob_got}.isdisjoint({i.id for i in anna_got})
    assert set(QueueItem.objects.filter(status=QueueItem.Status.LEASED, leased_by=bob).values_list("id", flat=True)) \
        == {i.id for i in bob_got}


# --- 3. queue_add counts the rows it created -----------------------------------------------------------------
@pytest.mark.django_db
def test_queue_add_counts_an_example_given_twice_once(project, admin, make_examples):
    [example, other] = make_examples(project, admin, [{"text": "One"}, {"text": "Two"}])

    created = queue_add(project=project, examples=[example, example, other], reason=QueueItem.Reason.UNCERTAIN)

    assert created == 2 == QueueItem.objects.filter(project=project).count()
    assert queue_add(project=project, examples=[example], reason=QueueItem.Reason.RANDOM) == 0


@pytest.mark.django_db(transaction=True)
def test_two_queue_adds_at_once_count_each_item_once(project, admin, make_examples):
    # Given three examples, and two writers (say a noise decision and a drift routing) queuing them together
    examples = make_examples(project, admin, [{"text": f"Text {i}"} for i in range(3)])
    # Both check the open slots before either inserts.
    # When both queue them at once
    with meeting_point(QueueItem.objects, "bulk_create"):
        results, errors = run_together(
            lambda: queue_add(project=project, examples=examples, reason=QueueItem.Reason.SUSPECT),
            lambda: queue_add(project=project, examples=examples, reason=QueueItem.Reason.DRIFT),
        )

    # Then the counts they return add up to the items that exist
    assert not errors, errors
    assert QueueItem.objects.filter(project=project).count() == 3
    assert sum(results) == 3, results


# --- 4. long __in lists stay under SQLite's limit of bound parameters -------------------------------------
SQLITE_LIMIT = SQLite.features_class.max_query_params  # 999: SQLite's smallest limit, the one Django assumes
MANY = SQLITE_LIMIT + 1


@contextmanager
def largest_bound_parameter_list() -> Iterator[list[int]]:
    """Record the number of parameters of every statement but INSERTs (Django batches those itself)."""
    seen: list[int] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not many and params and not sql.lstrip().upper().startswith("INSERT"):
            seen.append(len(params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


@pytest.fixture
def many_labeled(project, admin, make_examples) -> list[Example]:
    return make_examples(project, admin, [{"external_id": f"m{i}", "text": f"Many {i}", "label": "positive"}
                                          for i in range(MANY)])


@pytest.mark.django_db
def test_relabeling_many_examples_by_import_binds_few_parameters_per_query(project, admin, many_labeled):
    rows = [{"external_id": f"m{i}", "text": f"Many {i}", "label": "negative"} for i in range(MANY)]
    with largest_bound_parameter_list() as seen:
        result = examples_import(project=project, user=admin, rows=rows)
        refresh_current_labels([e.id for e in many_labeled], project=project)

    assert result.updated == MANY
    assert ExampleLabel.objects.filter(example__project=project, label__name="negative").count() == MANY
    assert max(seen) <= SQLITE_LIMIT


@pytest.mark.django_db
def test_queuing_many_examples_binds_few_parameters_per_query(project, many_labeled):
    with largest_bound_parameter_list() as seen:
        created = queue_add(project=project, examples=many_labeled, reason=QueueItem.Reason.SUSPECT)

    assert created == MANY
    assert max(seen, default=0) <= SQLITE_LIMIT  # PostgreSQL: one INSERT binding an array per column


@pytest.mark.django_db
def test_exporting_many_examples_binds_few_parameters_per_query(project, many_labeled):
    with largest_bound_parameter_list() as seen:
        rows = list(export.export_rows(project))

    assert len(rows) == MANY and all(row["label"] == "positive" for row in rows)
    assert max(seen) <= SQLITE_LIMIT


@pytest.mark.django_db
def test_agreement_over_many_examples_binds_few_parameters_per_query(project, many_labeled):
    ids = [e.id for e in many_labeled]
    with largest_bound_parameter_list() as seen:
        report = consensus.agreement_report(project, ids[:10], sample_ids=ids)

    assert report is not None
    assert max(seen) <= SQLITE_LIMIT


@pytest.mark.django_db
def test_a_conflict_group_of_many_examples_binds_few_parameters_per_query(project, many_labeled):
    ids = [e.id for e in many_labeled]
    ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY, metrics={
        "health": {"conflicts": {"groups": [{"example_ids": ids, "labels": ["positive"] * MANY, "score": 1.0}]}}})
    ExampleLabel.objects.filter(example_id=ids[0]).update(label=project.label_classes.get(name="negative"))
    with largest_bound_parameter_list() as seen:
        _header, groups = health.conflict_report(project)

    assert len(groups) == 1 and len(groups[0]["members"]) == MANY
    assert max(seen) <= SQLITE_LIMIT


@pytest.mark.django_db
def test_clearing_many_stale_consensus_labels_binds_few_parameters_per_query(project, many_labeled):
    from annotator.services.consensus import consensus_update

    # A project that went back to one annotator per item keeps consensus labels from its overlap days
    Example.objects.filter(id__in=[e.id for e in many_labeled[:500]]).update(consensus=["negative"])
    Example.objects.filter(id__in=[e.id for e in many_labeled[500:]]).update(consensus=["negative"])
    ids = [e.id for e in many_labeled]

    with largest_bound_parameter_list() as seen:
        summary = consensus_update(project=project, example_ids=ids, probs=np.full((len(ids), 3), 1 / 3),
                                   names=["positive", "negative", "neutral"])

    assert summary["n_cleared"] == MANY
    assert not Example.objects.filter(project=project, consensus__isnull=False).exists()
    assert max(seen) <= SQLITE_LIMIT
