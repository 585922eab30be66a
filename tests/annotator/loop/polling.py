"""Waiting for the worker: poll with a deadline, never sleep-and-hope.

``wait_until`` returns the first truthy value of ``probe``; on timeout it fails the test with the last
value seen and, when given, the tail of the worker's log (what a person debugging the failure needs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rest_framework.test import APIClient

FINISHED = {"succeeded", "failed", "cancelled"}


def wait_until(
    probe: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = f"\n--- worker log ---\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}{extra}")
        time.sleep(interval)


def poll_job(
    client: APIClient, job_id: int, *, timeout: float, diagnostics: Callable[[], str] | None = None,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[dict[str, Any], list[float]]:
    """GET the job until it finishes (or ``until`` holds); returns the last body and every progress seen."""
    seen: list[float] = []
    done = until or (lambda body: body["status"] in FINISHED)

    def probe() -> dict[str, Any] | None:
        response = client.get(f"/api/v1/jobs/{job_id}/")
        assert response.status_code == 200, response.content
        body = response.json()
        seen.append(body["progress"])
        return body if done(body) else None

    body = wait_until(probe, timeout=timeout, what=f"job {job_id}", diagnostics=diagnostics)
    return body, seen
