"""Webhook endpoints of a project (admins), and :func:`verify_webhook` for receivers (docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal, cast

from relabel_client.transport import Transport

WebhookEvent = Literal["job.finished", "job.failed", "version.promoted", "drift.alert", "queue.low"]
DeliveryStatus = Literal["pending", "delivered", "failed", "refused"]
TOLERANCE_SECONDS = 300


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
                   tolerance: float = TOLERANCE_SECONDS) -> bool:
    """True when ``body`` (the raw bytes) carries a valid ``X-Relabel-Signature`` under ``secret`` and its
    ``X-Relabel-Timestamp`` is within ``tolerance`` seconds of ``now``: an altered body, another secret or a
    replay after the tolerance fail. ``headers`` is a case-insensitive mapping (a web framework's request
    headers). Also drop an ``X-Relabel-Delivery`` id you accepted before, to refuse replays within it."""
    timestamp = headers.get("X-Relabel-Timestamp") or ""
    signature = headers.get("X-Relabel-Signature") or ""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, signature)


class WebhookEndpoints(Transport):
    """``/projects/{id}/webhooks/``: project admins only."""

    def list_webhooks(self, project_id: int, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._pages(f"projects/{project_id}/webhooks/", page_size=page_size)

    def create_webhook(self, project_id: int, url: str, events: list[WebhookEvent], *, active: bool = True,
                       description: str = "") -> dict[str, Any]:
        """The new endpoint with its ``secret``, which the server shows this once."""
        body = {"url": url, "events": events, "active": active, "description": description}
        return cast(dict[str, Any], self._json("POST", f"projects/{project_id}/webhooks/", body=body))

    def get_webhook(self, project_id: int, webhook_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("GET", f"projects/{project_id}/webhooks/{webhook_id}/"))

    def update_webhook(self, project_id: int, webhook_id: int, **changes: Any) -> dict[str, Any]:
        """Change any of ``url``, ``events``, ``active``, ``description``."""
        return cast(dict[str, Any], self._json("PATCH", f"projects/{project_id}/webhooks/{webhook_id}/",
                                               body=changes))

    def delete_webhook(self, project_id: int, webhook_id: int) -> None:
        self._json("DELETE", f"projects/{project_id}/webhooks/{webhook_id}/")

    def rotate_webhook_secret(self, project_id: int, webhook_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("POST", f"projects/{project_id}/webhooks/{webhook_id}/rotate-secret/"))

    def test_webhook(self, project_id: int, webhook_id: int) -> dict[str, Any]:
        """Send a ``ping`` now; the answer is the pending delivery."""
        return cast(dict[str, Any], self._json("POST", f"projects/{project_id}/webhooks/{webhook_id}/test/"))

    def list_webhook_deliveries(self, project_id: int, webhook_id: int, *, status: DeliveryStatus | None = None,
                                page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The delivery log, newest first."""
        params = {"status": status} if status else None
        return self._pages(f"projects/{project_id}/webhooks/{webhook_id}/deliveries/", params, page_size=page_size)

    def redeliver_webhook(self, project_id: int, webhook_id: int, delivery_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], self._json(
            "POST", f"projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/"))
