"""Fixtures shared by the API tests of this folder."""

from __future__ import annotations

from typing import Any

import pytest

from annotator.models import Example


@pytest.fixture
def existing(project: Any, admin: Any, make_examples: Any) -> list[Example]:
    """One example already in the project, so 'nothing written' is checked against a non-empty table."""
    return make_examples(
        project, admin, [{"external_id": "old-1", "text": "already here", "label": "neutral"}]
    )
