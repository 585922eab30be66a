"""Fixtures for the page tests: logged-in clients and rows the loop would have written (a trained
version with noise scores, jobs, drift windows), made directly so no model has to be trained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from annotator.models import Example, Project
from tests.annotator.views import factories


@pytest.fixture
def page_client() -> Callable[[Any], Client]:
    def make(user: Any | None = None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def htmx() -> dict[str, str]:
    """Headers of an htmx request (django-htmx reads HX-Request)."""
    return {"HX-Request": "true"}


@pytest.fixture
def queued(project: Project, admin: Any) -> list[Example]:
    """Five unlabeled examples in the queue of ``project``."""
    return factories.queued_examples(project, admin, n=5)


@pytest.fixture
def noisy(project: Project, admin: Any, annotator: Any) -> dict[str, Any]:
    """``project`` with a ready version whose noise report flags three labeled examples."""
    return factories.noisy_version(project, admin, labeler=annotator)
