"""The Python client (clients/python) against pytest-django's live server: real HTTP, real PostgreSQL.

The server runs in a thread of this process, so tasks it would send to Celery (drift checks after a push, a
training) are recorded by ``sent_tasks`` instead of reaching Redis: no worker runs in these tests, and a
message left in the broker would be picked up by the next test's worker, for rows that no longer exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.app.task import Task
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from relabel_client import Client, RetryPolicy

from annotator.models import Project, Role
from annotator.services.projects import member_set, project_create

PASSWORD = "correct-horse-battery"
LABELS = ["positive", "negative", "neutral"]


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # throttles count in the cache


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    sent: list[tuple[str, Any]] = []

    def record(task: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        sent.append((task.name, args))

    monkeypatch.setattr(Task, "apply_async", record)
    return sent


@pytest.fixture
def server(transactional_db: None, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    # Each request of the live server runs in a thread of its own; with persistent connections
    # (CONN_MAX_AGE) the thread's connection would outlive it and keep the test database from being dropped.
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)
    return live_server.url


@pytest.fixture
def make_user(transactional_db: None) -> Callable[..., Any]:
    def make(username: str, **extra: Any) -> Any:
        return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def admin(make_user: Callable[..., Any]) -> Any:
    return make_user("alice")


@pytest.fixture
def reviewer(make_user: Callable[..., Any]) -> Any:
    return make_user("rita")


@pytest.fixture
def annotator(make_user: Callable[..., Any]) -> Any:
    return make_user("anna")


@pytest.fixture
def project(admin: Any, reviewer: Any, annotator: Any) -> Project:
    """A single-label project made on the server side: alice admin, rita reviewer, anna annotator."""
    made = project_create(user=admin, name="Reviews", task="single_label", labels=list(LABELS), settings=None)
    member_set(project=made, username=reviewer.username, role=Role.REVIEWER)
    member_set(project=made, username=annotator.username, role=Role.ANNOTATOR)
    return made


@pytest.fixture
def new_client(server: str) -> Iterator[Callable[..., Client]]:
    """Clients of the live server, closed after the test."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(server, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client_for(new_client: Callable[..., Client]) -> Callable[..., Client]:
    """A client logged in as ``username`` (token auth, fetched from POST /auth/token/), no retry waits."""

    def make(username: str, **options: Any) -> Client:
        options.setdefault("retry", RetryPolicy(max_retries=2, backoff=0.01, jitter=0))
        return new_client(username=username, password=PASSWORD, **options)

    return make


@pytest.fixture
def as_admin(client_for: Callable[..., Client], admin: Any) -> Client:
    return client_for(admin.username)


@pytest.fixture
def as_reviewer(client_for: Callable[..., Client], reviewer: Any) -> Client:
    return client_for(reviewer.username)


@pytest.fixture
def as_annotator(client_for: Callable[..., Client], annotator: Any) -> Client:
    return client_for(annotator.username)
