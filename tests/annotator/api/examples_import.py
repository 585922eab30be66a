"""Requests and rows shared by the bulk-import tests (test_examples_import*.py)."""

from __future__ import annotations

from typing import Any

from annotator.models import Example


def url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/examples/"


def post_rows(client: Any, project_id: int, rows: Any) -> Any:
    return client.post(url(project_id), rows, format="json")


def post_raw(client: Any, project_id: int, body: str | bytes) -> Any:
    return client.generic("POST", url(project_id), body, content_type="application/json")


def current_labels(example_id: int) -> list[str]:
    return list(Example.objects.get(pk=example_id).labels.order_by("position").values_list("name", flat=True))



def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"deeper": value}
    return value
