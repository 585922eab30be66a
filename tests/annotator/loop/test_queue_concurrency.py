"""Leasing under contention on real PostgreSQL: concurrent annotators never get the same item; an
expired lease goes back to the queue and its old holder can no longer answer; skip releases."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from annotator.models import Annotation, QueueItem, Role
from annotator.services.projects import member_set
from annotator.services.queue import queue_add, queue_lease
from tests.annotator.assertions import error_list

THREADS = 8
ITEMS = 60
BATCH = 4


@pytest.fixture
def queued(project, admin, make_examples) -> list[QueueItem]:
    examples = make_examples(project, admin, [{"external_id": f"q{i}", "text": f"Queued text {i}"} for i in range(ITEMS)])
    # A few priority ties, so the ordering alone cannot keep threads apart.
    for i, example in enumerate(examples):
        queue_add(project=project, examples=[example], reason=QueueItem.Reason.UNCERTAIN, priority=float(i % 5))
    return list(QueueItem.objects.filter(project=project))


@pytest.mark.parametrize("items_are", ["pending", "expired leases"])
@pytest.mark.django_db(transaction=True)
def test_eight_annotators_leasing_at_once_never_receive_the_same_item(project, queued, make_user, items_are):
    # Given eight annotators of one project, and items waiting (or held by someone whose leases ran out)
    users = [make_user(f"worker{i}") for i in range(THREADS)]
    for user in users:
        member_set(project=project, username=user.username, role=Role.ANNOTATOR)
    if items_are == "expired leases":
        QueueItem.objects.filter(project=project).update(
            status=QueueItem.Status.LEASED, leased_by=make_user("gone"),
            lease_expires_at=timezone.now() - timedelta(minutes=1))
    barrier = threading.Barrier(THREADS)
    leased: dict[int, list[int]] = {user.pk: [] for user in users}
    errors: list[BaseException] = []

    def annotate_all(user: Any) -> None:
        try:
            barrier.wait(timeout=30)
            while True:
                items = queue_lease(project=project, user=user, n=BATCH)
                if not items:
                    return
                leased[user.pk].extend(item.id for item in items)
                # Answered (done) items are not leased again, so the next call brings new work.
                QueueItem.objects.filter(id__in=[item.id for item in items]).update(
                    status=QueueItem.Status.DONE, done_by=user)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    # When they all lease until the queue is empty, at the same time
    threads = [threading.Thread(target=annotate_all, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a leasing thread hung"
    assert not errors, errors

    # Then every item went to exactly one of them, and the work was shared
    everything = [item_id for ids in leased.values() for item_id in ids]
    assert len(everything) == len(set(everything)), "an item was leased to two annotators"
    assert set(everything) == {item.id for item in queued}
    assert sum(1 for ids in leased.values() if ids) >= 2
    for user in users:
        done_by = set(QueueItem.objects.filter(id__in=leased[user.pk]).values_list("done_by", flat=True))
        assert done_by <= {user.pk}


@pytest.fixture
def second_annotator(project, make_user, api_client) -> Any:
    user = make_user("bob")
    member_set(project=project, username=user.username, role=Role.ANNOTATOR)
    return api_client(user)


def lease_one(client: Any, project_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/projects/{project_id}/queue/next/", {"n": 1})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_an_expired_lease_returns_the_item_and_the_old_holder_cannot_answer(
    project, queued, as_annotator, second_annotator,
):
    # Given anna holds the top item and her lease ran out
    [first] = lease_one(as_annotator, project.id)
    QueueItem.objects.filter(pk=first["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    stats = as_annotator.get(f"/api/v1/projects/{project.id}/queue/").json()
    assert stats["pending"] == ITEMS and stats["leased"] == 0

    # When bob asks for work, he gets that item
    [taken] = lease_one(second_annotator, project.id)
    assert taken["id"] == first["id"]
    answers = Annotation.objects.count()

    # Then anna's late answer is refused with 409 and nothing is written; bob's is accepted
    late = as_annotator.post(f"/api/v1/queue/{first['id']}/submit/", {"label": "positive"}, format="json")
    assert late.status_code == 409
    assert "lease" in error_list(late)[0]["message"]
    assert Annotation.objects.count() == answers
    on_time = second_annotator.post(f"/api/v1/queue/{taken['id']}/submit/", {"label": "negative"}, format="json")
    assert on_time.status_code == 201, on_time.content
    assert on_time.json()["user"] == "bob"
    assert QueueItem.objects.get(pk=taken["id"]).status == QueueItem.Status.DONE


@pytest.mark.django_db
def test_an_expired_lease_nobody_took_over_is_lost_all_the_same(project, queued, as_annotator):
    [item] = lease_one(as_annotator, project.id)
    QueueItem.objects.filter(pk=item["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    response = as_annotator.post(f"/api/v1/queue/{item['id']}/submit/", {"label": "positive"}, format="json")

    assert response.status_code == 409
    assert not Annotation.objects.filter(queue_item_id=item["id"]).exists()


@pytest.mark.django_db
def test_skip_releases_the_item_to_the_next_annotator(project, queued, as_annotator, second_annotator):
    # Given anna leased the top item
    [item] = lease_one(as_annotator, project.id)

    # When she skips it
    response = as_annotator.post(f"/api/v1/queue/{item['id']}/skip/")

    # Then it is pending again and the next annotator receives it; anna can no longer answer it
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending"
    [again] = lease_one(second_annotator, project.id)
    assert again["id"] == item["id"]
    late = as_annotator.post(f"/api/v1/queue/{item['id']}/submit/", {"label": "positive"}, format="json")
    assert late.status_code == 409

