"""The client's webhook methods against a live server, and ``verify_webhook`` on what the server signs."""

from __future__ import annotations

from typing import Any

import pytest
from relabel_client import Client, Forbidden, InvalidRequest, verify_webhook

from annotator.models import Project, WebhookDelivery
from annotator.services.webhook_delivery import body_bytes, signature

PUBLIC = "https://93.184.216.34/hooks/relabel"  # an address literal: nothing to resolve


def test_an_admin_manages_webhooks_through_the_client(as_admin: Client, as_reviewer: Client, project: Project,
                                                      sent_tasks: list[Any]) -> None:
    made = as_admin.create_webhook(project.id, PUBLIC, ["job.failed", "version.promoted"], description="ops")

    assert made["secret"].startswith("whsec_")
    assert [w["id"] for w in as_admin.list_webhooks(project.id)] == [made["id"]]
    changed = as_admin.update_webhook(project.id, made["id"], events=["queue.low"], active=False)
    assert changed["events"] == ["queue.low"] and changed["active"] is False
    as_admin.update_webhook(project.id, made["id"], active=True)
    ping = as_admin.test_webhook(project.id, made["id"])
    assert ping["event"] == "ping" and ping["status"] == "pending"
    assert ("annotator.tasks.deliver_webhook", [ping["id"]]) in [(name, list(args)) for name, args in sent_tasks]
    [logged] = as_admin.list_webhook_deliveries(project.id, made["id"], status="pending")
    assert logged["id"] == ping["id"]
    again = as_admin.redeliver_webhook(project.id, made["id"], ping["id"])
    assert again["redelivery_of"] == ping["id"]
    rotated = as_admin.rotate_webhook_secret(project.id, made["id"])
    assert rotated["secret"] != made["secret"]
    with pytest.raises(Forbidden):
        as_reviewer.create_webhook(project.id, PUBLIC, ["job.failed"])
    with pytest.raises(InvalidRequest) as refused:
        as_admin.create_webhook(project.id, "http://127.0.0.1:9/", ["job.failed"])
    assert refused.value.errors[0]["field"] == "url"
    as_admin.delete_webhook(project.id, made["id"])
    assert list(as_admin.list_webhooks(project.id)) == []
    assert not WebhookDelivery.objects.exists()


def test_verify_webhook_accepts_what_the_server_signs_and_refuses_replays_and_changes() -> None:
    body = body_bytes({"id": "d1", "event": "ping", "created_at": "2026-01-01T00:00:00+00:00",
                       "project": {"id": 1, "name": "p"}, "data": {}})
    headers = {"X-Relabel-Timestamp": "1767225600", "X-Relabel-Signature": signature("whsec_x", 1767225600, body)}

    assert verify_webhook("whsec_x", headers, body, now=1767225600 + 10)
    assert not verify_webhook("whsec_x", headers, body, now=1767225600 + 301)  # replayed too late
    assert not verify_webhook("whsec_x", headers, body + b" ", now=1767225600)  # altered body
    assert not verify_webhook("whsec_y", headers, body, now=1767225600)  # another secret
    assert not verify_webhook("whsec_x", {**headers, "X-Relabel-Timestamp": "1767225601"}, body, now=1767225600)
    assert not verify_webhook("whsec_x", {"X-Relabel-Signature": headers["X-Relabel-Signature"]}, body)
