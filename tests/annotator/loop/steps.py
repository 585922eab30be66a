"""What a client does through the API in these tests: import rows, ask for training, wait for a job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework.test import APIClient

from tests.annotator.loop.polling import poll_job

TRAIN_TIMEOUT = 240


def import_rows(client: APIClient, project_id: int, rows: list[dict[str, Any]]) -> list[int]:
    response = client.post(f"/api/v1/projects/{project_id}/examples/", rows, format="json")
    assert response.status_code == 201, response.content
    return response.json()["ids"]


def start_training(client: APIClient, project_id: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/projects/{project_id}/train/", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["job"]


def train(client: APIClient, project_id: int, *, diagnostics: Callable[[], str], **body: Any) -> dict[str, Any]:
    """Train and wait for the job to succeed; returns the finished job."""
    job = start_training(client, project_id, **body)
    finished, _ = poll_job(client, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=diagnostics)
    assert finished["status"] == "succeeded", finished
    return finished
