"""Checks shared by the API tests: nothing written, and the error shape of API.md."""

from __future__ import annotations

from typing import Any

from annotator.models import Annotation, Example


def counts() -> tuple[int, int]:
    """(examples, annotations) in the whole database: a failed request must leave both unchanged."""
    return Example.objects.count(), Annotation.objects.count()


def error_list(response: Any) -> list[dict[str, Any]]:
    """The errors of a failed response, checked against the API's error shape."""
    body = response.json()
    assert set(body) >= {"errors"}
    assert isinstance(body["errors"], list) and body["errors"]
    for error in body["errors"]:
        assert isinstance(error.get("message"), str) and error["message"]
        assert set(error) <= {"index", "field", "message"}
    return body["errors"]
