"""The security tests' world: one project with a member of every role, queue work in every state, a job
and a model version, and an outsider who administers a project of their own.

Every id a request needs is in ``World``; ``World.ids(role)`` names the caller's own lease and answer and
somebody else's. ``snapshot()`` is every row a request could write, so a refused request can be shown to
have changed nothing and an allowed write to have changed something.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from annotator.models import (
    Annotation,
    Example,
    ExampleLabel,
    Job,
    LabelClass,
    Membership,
    ModelVersion,
    Project,
    QueueItem,
    Role,
    WebhookDelivery,
    WebhookEndpoint,
)
from annotator.services.examples import examples_import
from annotator.services.projects import member_set, project_create
from annotator.services.queue import queue_add, queue_lease, queue_submit
from tests.annotator.conftest import PASSWORD

ROLES = ("admin", "reviewer", "annotator", "outsider", "anonymous")
MEMBERS = ("admin", "reviewer", "annotator")
USERNAMES = {"admin": "alice", "reviewer": "rita", "annotator": "anna", "outsider": "oscar", "anonymous": None}


@dataclass
class World:
    project: int
    other_project: int  # the outsider's own project
    example: int  # labeled at import by the admin; no annotator ever touched it
    work_example: int  # the example of the annotator's current lease
    lease: dict[str, int]  # role -> queue item leased to that role
    answer: dict[str, int]  # role -> that role's answer (annotation) to a queue item
    other_item: int  # an item of the outsider's project, leased to the outsider
    other_model: int  # a ready version of the outsider's project
    job: int  # a queued training job: starting another is a 409
    model: int  # a ready, not promoted version
    webhook: int  # a webhook endpoint of the project
    delivery: int  # a delivery of that endpoint
    other_webhook: int  # a webhook endpoint of the outsider's project
    label: int  # the project's label "neutral"
    other_label: int  # a label of the outsider's project
    spare: int  # the user id of a member (an annotator) the admin may remove
    outsider_user: int  # the outsider's user id: not a member of the project

    def ids(self, role: str) -> dict[str, Any]:
        """Path values for ``role``: its own lease and answer, and someone else's."""
        someone_else = "reviewer" if role == "annotator" else "annotator"
        return {
            "p": self.project, "q": self.other_project, "x": self.example, "work": self.work_example,
            "own_item": self.lease.get(role, self.lease["annotator"]), "others_item": self.lease[someone_else],
            "own_answer": self.answer.get(role, self.answer["annotator"]),
            "others_answer": self.answer[someone_else],
            "q_item": self.other_item, "q_model": self.other_model, "job": self.job, "model": self.model,
            "hook": self.webhook, "delivery": self.delivery, "q_hook": self.other_webhook,
            "label": self.label, "q_label": self.other_label, "spare": self.spare, "oscar": self.outsider_user,
        }


def _import(project: Project, user: Any, prefix: str, n: int, *, label: str | None = None) -> list[int]:
    rows = [{"text": f"{prefix} text number {i}", "external_id": f"{prefix}-{i}"} for i in range(n)]
    if label:
        for row in rows:
            row["label"] = label
    return examples_import(project=project, user=user, rows=rows).ids


def _make_users() -> dict[str, Any]:
    make = get_user_model().objects.create_user
    made = {role: make(username=name, password=PASSWORD) for role, name in USERNAMES.items() if name}
    made["spare"] = make(username="sam", password=PASSWORD)  # a member the admin may remove
    make(username="nora", password=PASSWORD)  # a user the admin may add
    return made


def _build(users: dict[str, Any]) -> World:
    alice, oscar = users["admin"], users["outsider"]
    project = project_create(user=alice, name="Reviews", task="single_label",
                             labels=["positive", "negative", "neutral"], settings=None)
    member_set(project=project, username="rita", role=Role.REVIEWER)
    member_set(project=project, username="anna", role=Role.ANNOTATOR)
    member_set(project=project, username="sam", role=Role.ANNOTATOR)
    [example] = _import(project, alice, "labeled", 1, label="positive")

    queued = _import(project, alice, "queued", 7)
    for i, pk in enumerate(queued):
        queue_add(project=project, examples=[pk], reason="uncertain", priority=100.0 - i)
    answer, lease = {}, {}
    for role in MEMBERS:
        [item] = queue_lease(project=project, user=users[role], n=1)
        answer[role] = queue_submit(user=users[role], item_id=item.id, data={"label": "negative"}).id
    for role in MEMBERS:
        [item] = queue_lease(project=project, user=users[role], n=1)
        lease[role] = item.id

    theirs = project_create(user=oscar, name="Theirs", task="single_label", labels=["a", "b"], settings=None)
    their_examples = _import(theirs, oscar, "theirs", 1)
    queue_add(project=theirs, examples=their_examples, reason="random", priority=1.0)
    [their_item] = queue_lease(project=theirs, user=oscar, n=1)
    their_model = ModelVersion.objects.create(project=theirs, number=1, status=ModelVersion.Status.READY)

    job = Job.objects.create(project=project, kind=Job.Kind.TRAIN)
    model = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    hook = WebhookEndpoint.objects.create(project=project, url="https://93.184.216.34/hook", secret="whsec_world",
                                          events=["job.failed"], created_by=alice)
    delivery = WebhookDelivery.objects.create(endpoint=hook, event="ping", payload={"data": {}},
                                              status=WebhookDelivery.Status.DELIVERED, attempts=1)
    their_hook = WebhookEndpoint.objects.create(project=theirs, url="https://93.184.216.34/theirs", secret="s",
                                                events=["queue.low"], created_by=oscar)
    return World(
        project=project.id, other_project=theirs.id, example=example,
        work_example=QueueItem.objects.get(pk=lease["annotator"]).example_id,
        lease=lease, answer=answer, other_item=their_item.id, other_model=their_model.id,
        job=job.id, model=model.id, webhook=hook.id, delivery=delivery.id, other_webhook=their_hook.id,
        label=LabelClass.objects.get(project=project, name="neutral").id,
        other_label=LabelClass.objects.get(project=theirs, name="a").id,
        spare=users["spare"].id, outsider_user=oscar.id,
    )


@pytest.fixture(scope="module")
def _built(django_db_setup: None, django_db_blocker: Any) -> Iterator[tuple[dict[str, Any], World]]:
    """The users and the world, made once per module inside a transaction that is rolled back at its end;
    each test runs in a savepoint of it (pytest-django's own), so tests still see only their own writes."""
    fast = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with django_db_blocker.unblock(), fast:
        outer = transaction.atomic()
        outer.__enter__()
        try:
            users = _make_users()
            yield users, _build(users)
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def users(_built: tuple[dict[str, Any], World], db: None) -> dict[str, Any]:
    return _built[0]


@pytest.fixture
def world(_built: tuple[dict[str, Any], World], db: None) -> World:
    return _built[1]


def snapshot() -> tuple[Any, ...]:
    """Every row a request of the API or the pages could write."""
    return (
        list(Example.objects.order_by("id").values_list("id", "project_id", "text", "source", "label_source")),
        list(ExampleLabel.objects.order_by("example_id", "label_id").values_list("example_id", "label_id")),
        list(Annotation.objects.order_by("id").values_list("id", "example_id", "user_id", "kind", "labels")),
        sorted(Membership.objects.values_list("project_id", "user__username", "role")),
        list(LabelClass.objects.order_by("id").values_list("id", "project_id", "name", "position", "description",
                                                           "example", "retired")),
        list(Project.objects.order_by("id").values_list("id", "name", "settings", "serving_version_id")),
        list(QueueItem.objects.order_by("id").values_list(
            "id", "status", "leased_by_id", "lease_expires_at", "done_by_id", "skipped_by_id")),
        list(Job.objects.order_by("id").values_list("id", "kind", "status", "cancel_requested")),
        list(ModelVersion.objects.order_by("id").values_list("id", "status", "promoted_at")),
        sorted(Token.objects.values_list("user__username", "key")),
        list(get_user_model().objects.order_by("id").values_list("id", "username", "is_staff", "is_active")),
        list(WebhookEndpoint.objects.order_by("id").values_list("id", "url", "events", "active", "secret")),
        list(WebhookDelivery.objects.order_by("id").values_list("id", "endpoint_id", "status")),
    )


def routes() -> list[tuple[str, Any]]:
    """Every URL pattern of the site as (route, callback), routes joined from the root."""

    def walk(patterns: list[Any], prefix: str) -> list[tuple[str, Any]]:
        out = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                out.extend(walk(pattern.url_patterns, prefix + str(pattern.pattern)))
            elif isinstance(pattern, URLPattern):
                out.append((prefix + str(pattern.pattern), pattern.callback))
        return out

    return walk(get_resolver().url_patterns, "")
