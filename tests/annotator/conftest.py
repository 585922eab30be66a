"""Fixtures for the annotator tests: users, projects with members, examples, and API clients.

Rows are made through the services (the same path the API takes), so every fixture starts from a state
a real user could have reached. ``api_client(user)`` returns a DRF client authenticated with that user's
token.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator.models import Annotation, Example, Project, Role
from annotator.services.annotations import annotation_create
from annotator.services.examples import examples_import
from annotator.services.projects import member_set, project_create

PASSWORD = "correct-horse-battery"
LABELS = ["positive", "negative", "neutral"]

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings: Any) -> None:
    # The production hasher costs half a second per user on this machine; tests do not need its strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The token endpoint is throttled through the cache; each test starts with a clean slate.
    cache.clear()


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    def make(username: str | None = None, **extra: Any) -> Any:
        name = username or f"user{next(_names)}"
        return get_user_model().objects.create_user(username=name, password=PASSWORD, **extra)

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
def outsider(make_user: Callable[..., Any]) -> Any:
    return make_user("oscar")


@pytest.fixture
def make_project(db: None) -> Callable[..., Project]:
    def make(
        user: Any,
        *,
        name: str = "Reviews",
        task: str = "single_label",
        labels: list[str] | None = None,
        settings: dict[str, Any] | None = None,
        members: dict[Any, str] | None = None,
    ) -> Project:
        project = project_create(
            user=user, name=name, task=task, labels=labels or list(LABELS), settings=settings
        )
        for member, role in (members or {}).items():
            member_set(project=project, username=member.username, role=role)
        return project

    return make


@pytest.fixture
def project(make_project: Callable[..., Project], admin: Any, reviewer: Any, annotator: Any) -> Project:
    """A single-label project: alice is admin, rita reviewer, anna annotator."""
    return make_project(admin, members={reviewer: Role.REVIEWER, annotator: Role.ANNOTATOR})


@pytest.fixture
def multi_project(make_project: Callable[..., Project], admin: Any, reviewer: Any) -> Project:
    return make_project(
        admin,
        name="Topics",
        task="multi_label",
        labels=["sports", "food", "tech"],
        members={reviewer: Role.REVIEWER},
    )


@pytest.fixture
def make_examples(db: None) -> Callable[..., list[Example]]:
    """Import rows through the import service and return the examples in row order."""

    def make(project: Project, user: Any, rows: list[dict[str, Any]]) -> list[Example]:
        result = examples_import(project=project, user=user, rows=rows)
        by_id = Example.objects.in_bulk(result.ids)
        return [by_id[pk] for pk in result.ids]

    return make


@pytest.fixture
def annotate() -> Callable[..., Annotation]:
    def make(
        example: Example, user: Any, *labels: str, kind: str | None = None, note: str = ""
    ) -> Annotation:
        return annotation_create(example=example, user=user, labels=list(labels), kind=kind, note=note)

    return make


@pytest.fixture
def api_client() -> Callable[[Any], APIClient]:
    def make(user: Any | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def as_admin(api_client: Callable[[Any], APIClient], admin: Any) -> APIClient:
    return api_client(admin)


@pytest.fixture
def as_reviewer(api_client: Callable[[Any], APIClient], reviewer: Any) -> APIClient:
    return api_client(reviewer)


@pytest.fixture
def as_annotator(api_client: Callable[[Any], APIClient], annotator: Any) -> APIClient:
    return api_client(annotator)


@pytest.fixture
def as_outsider(api_client: Callable[[Any], APIClient], outsider: Any) -> APIClient:
    return api_client(outsider)


# --- encoders (issue 16: the project setting `encoder`) ------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_encoder_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny BERT directories built once per session (tests/tiny_bert.py): two working ones with different weights,
    and three broken ones (no config.json, no tokenizer files, no weights)."""
    from tests.tiny_bert import tiny_bert

    root = tmp_path_factory.mktemp("encoders")
    no_config = root / "no-config"
    no_config.mkdir()
    (no_config / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return {
        "tiny": str(tiny_bert(root / "tiny", seed=0)),
        "tiny-b": str(tiny_bert(root / "tiny-b", seed=1)),
        "no-config": str(no_config),
        "no-tokenizer": str(tiny_bert(root / "no-tokenizer", tokenizer=False)),
        "no-weights": str(tiny_bert(root / "no-weights", weights=False)),
    }


@pytest.fixture
def tiny_encoders(settings: Any, tiny_encoder_dirs: dict[str, str]) -> dict[str, str]:
    """The operator lists the tiny encoders beside the bundled MiniLM (settings.ENCODERS) for this test."""
    settings.ENCODERS = {**settings.ENCODERS, **tiny_encoder_dirs}
    return tiny_encoder_dirs
