"""The webhook endpoints of the API: admins add, change and remove endpoints, read the delivery log, send a
test and redeliver; bad input is a 400 naming the field and writes nothing; the secret is in the create and
rotate answers only."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from annotator.models import WebhookDelivery, WebhookEndpoint
from annotator.services.webhook_delivery import delivery_attempt
from tests.annotator.openapi import assert_answer_matches_schema
from tests.annotator.webhook_receiver import Receiver, Reply, fake_dns

HOOK = "https://hooks.example.test/relabel"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34"], "other.example.test": ["93.184.216.35"]})


def _path(project: Any, rest: str = "") -> str:
    return f"/api/v1/projects/{project.id}/webhooks/{rest}"


def _create(client: Any, project: Any, **body: Any) -> Any:
    return client.post(_path(project), {"url": HOOK, "events": ["job.failed", "version.promoted"], **body},
                       format="json")


def test_an_admin_adds_an_endpoint_and_sees_its_secret_only_once(project, as_admin, caplog):
    caplog.set_level(logging.DEBUG)

    created = _create(as_admin, project, description="model registry")

    assert created.status_code == 201, created.content
    assert_answer_matches_schema(created, "POST", "/api/v1/projects/{project_id}/webhooks/")
    body = created.json()
    assert body["url"] == HOOK and body["events"] == ["job.failed", "version.promoted"] and body["active"] is True
    assert body["created_by"] == "alice" and body["description"] == "model registry"
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    listed = as_admin.get(_path(project))
    assert_answer_matches_schema(listed, "GET", "/api/v1/projects/{project_id}/webhooks/")
    one = as_admin.get(_path(project, f"{body['id']}/"))
    assert [row["id"] for row in listed.json()["results"]] == [body["id"]]
    assert "secret" not in listed.json()["results"][0] and "secret" not in one.json()
    assert secret not in listed.content.decode() + one.content.decode()
    assert secret not in caplog.text


def test_rotating_the_secret_returns_a_new_one(project, as_admin):
    first = _create(as_admin, project).json()

    rotated = as_admin.post(_path(project, f"{first['id']}/rotate-secret/"))

    assert rotated.status_code == 200
    assert rotated.json()["secret"] != first["secret"]
    assert WebhookEndpoint.objects.get().secret == rotated.json()["secret"]


@pytest.mark.parametrize("body, field, says", [
    ({"url": "ftp://hooks.example.test/x"}, "url", "http or https"),
    ({"url": "https://user:pw@hooks.example.test/"}, "url", "credentials"),
    ({"url": "https://nowhere.example.test/"}, "url", "does not resolve"),
    ({"url": 7}, "url", "http or https"),
    ({"events": []}, "events", "non-empty list"),
    ({"events": ["job.finished", "model.exploded"]}, "events", "unknown event 'model.exploded'"),
    ({"events": "job.failed"}, "events", "non-empty list"),
    ({"active": "yes"}, "active", "true or false"),
    ({"description": "x" * 201}, "description", "at most 200"),
    ({"secret": "mine"}, "secret", "unknown field"),
])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(project, as_admin, body, field, says):
    response = _create(as_admin, project, **body)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert any(e.get("field") == field and says in e["message"] for e in errors), errors
    assert not WebhookEndpoint.objects.exists()


def test_a_patch_with_one_bad_field_changes_nothing(project, as_admin):
    endpoint = _create(as_admin, project).json()

    response = as_admin.patch(_path(project, f"{endpoint['id']}/"),
                              {"url": "https://other.example.test/in", "events": ["nope"]}, format="json")

    assert response.status_code == 400
    row = WebhookEndpoint.objects.get()
    assert (row.url, row.events) == (HOOK, ["job.failed", "version.promoted"])


def test_an_admin_changes_and_removes_an_endpoint(project, as_admin):
    endpoint = _create(as_admin, project).json()

    changed = as_admin.patch(_path(project, f"{endpoint['id']}/"),
                             {"url": "https://other.example.test/in", "events": ["queue.low", "queue.low"],
                              "active": False}, format="json")

    assert changed.status_code == 200, changed.content
    assert_answer_matches_schema(changed, "PATCH", "/api/v1/projects/{project_id}/webhooks/{webhook_id}/")
    assert changed.json()["events"] == ["queue.low"] and changed.json()["active"] is False
    assert as_admin.delete(_path(project, f"{endpoint['id']}/")).status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert as_admin.get(_path(project, f"{endpoint['id']}/")).status_code == 404


def test_an_endpoint_of_another_project_is_404(project, make_project, admin, as_admin):
    theirs = make_project(admin, name="Other")
    endpoint = _create(as_admin, theirs).json()

    for method, rest in [("get", ""), ("patch", ""), ("delete", ""), ("post", "test/"), ("post", "rotate-secret/"),
                         ("get", "deliveries/")]:
        response = getattr(as_admin, method)(_path(project, f"{endpoint['id']}/{rest}"), {}, format="json")
        assert response.status_code == 404, (method, rest, response.status_code)
    assert WebhookEndpoint.objects.get().url == HOOK


def test_a_project_has_at_most_20_endpoints(project, as_admin):
    for _ in range(20):
        assert _create(as_admin, project).status_code == 201

    response = _create(as_admin, project)

    assert response.status_code == 400 and "at most 20" in response.json()["errors"][0]["message"]
    assert WebhookEndpoint.objects.count() == 20


def test_test_ping_log_filter_and_redelivery(project, as_admin, monkeypatch, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([Reply(400, body=b"bad signature"), Reply(200)]) as receiver:
        endpoint = _create(as_admin, project, url=receiver.url).json()
        ping = as_admin.post(_path(project, f"{endpoint['id']}/test/"))
        assert ping.status_code == 202, ping.content
        assert_answer_matches_schema(ping, "POST", "/api/v1/projects/{project_id}/webhooks/{webhook_id}/test/")
        # A 400 is not tried again: failed after one attempt
        assert delivery_attempt(ping.json()["id"]) == "failed"

        again = as_admin.post(_path(project, f"{endpoint['id']}/deliveries/{ping.json()['id']}/redeliver/"))
        assert again.status_code == 202
        assert delivery_attempt(again.json()["id"]) == "delivered"

    first, second = (WebhookDelivery.objects.get(pk=ping.json()["id"]),
                     WebhookDelivery.objects.get(pk=again.json()["id"]))
    assert (first.status, first.attempts, first.last_response_code) == ("failed", 1, 400)
    assert first.last_error == "HTTP 400: bad signature"
    assert second.redelivery_of == first and second.uuid != first.uuid
    assert second.payload["data"] == first.payload["data"]
    assert second.payload["created_at"] == first.payload["created_at"]
    log = as_admin.get(_path(project, f"{endpoint['id']}/deliveries/"))
    assert_answer_matches_schema(log, "GET", "/api/v1/projects/{project_id}/webhooks/{webhook_id}/deliveries/")
    assert [row["id"] for row in log.json()["results"]] == [second.pk, first.pk]
    failed = as_admin.get(_path(project, f"{endpoint['id']}/deliveries/?status=failed")).json()["results"]
    assert [row["id"] for row in failed] == [first.pk]
    bad = as_admin.get(_path(project, f"{endpoint['id']}/deliveries/?status=lost"))
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"
    assert len(receiver.requests) == 2


def test_a_redirect_is_not_followed(project, as_admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})]) as receiver:
        endpoint = _create(as_admin, project, url=receiver.url).json()
        delivery = as_admin.post(_path(project, f"{endpoint['id']}/test/")).json()
        status = delivery_attempt(delivery["id"])

    assert status == "failed"
    row = WebhookDelivery.objects.get(pk=delivery["id"])
    assert row.last_response_code == 302 and "redirects are not followed" in row.last_error
    assert len(receiver.requests) == 1


def test_an_inactive_endpoint_gets_no_test_and_its_pending_deliveries_fail(project, as_admin, admin):
    endpoint = _create(as_admin, project).json()
    pending = as_admin.post(_path(project, f"{endpoint['id']}/test/")).json()
    as_admin.patch(_path(project, f"{endpoint['id']}/"), {"active": False}, format="json")

    response = as_admin.post(_path(project, f"{endpoint['id']}/test/"))

    assert response.status_code == 409 and "not active" in response.json()["errors"][0]["message"]
    assert delivery_attempt(pending["id"]) == "failed"
    assert "deactivated" in WebhookDelivery.objects.get(pk=pending["id"]).last_error
    assert WebhookDelivery.objects.count() == 1


def test_a_second_task_for_the_same_attempt_sends_nothing(project, as_admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([Reply(200)]) as receiver:
        endpoint = _create(as_admin, project, url=receiver.url).json()
        delivery = as_admin.post(_path(project, f"{endpoint['id']}/test/")).json()

        assert delivery_attempt(delivery["id"]) == "delivered"
        assert delivery_attempt(delivery["id"]) is None  # a duplicate delivery of the task

    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get(pk=delivery["id"]).attempts == 1


@pytest.mark.parametrize("client_name", ["as_reviewer", "as_annotator"])
def test_members_below_admin_are_refused_and_outsiders_see_nothing(project, as_admin, as_outsider, client_name,
                                                                  request):
    client = request.getfixturevalue(client_name)
    endpoint = _create(as_admin, project).json()

    assert client.get(_path(project)).status_code == 403
    assert _create(client, project).status_code == 403
    assert client.post(_path(project, f"{endpoint['id']}/rotate-secret/")).status_code == 403
    assert as_outsider.get(_path(project)).status_code == 404
    assert WebhookEndpoint.objects.count() == 1


def test_a_delivery_whose_last_attempt_was_lost_is_not_tried_beyond_the_limit(project, as_admin, settings):
    # Given a delivery whose fifth attempt never recorded an outcome (its worker died), sent again by the sweep
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([Reply(200)]) as receiver:
        endpoint = _create(as_admin, project, url=receiver.url).json()
        delivery = as_admin.post(_path(project, f"{endpoint['id']}/test/")).json()
        WebhookDelivery.objects.filter(pk=delivery["id"]).update(attempts=settings.WEBHOOK_MAX_ATTEMPTS)

        # When the task runs, nothing is sent and the delivery is failed with the reason
        assert delivery_attempt(delivery["id"]) is None

    row = WebhookDelivery.objects.get(pk=delivery["id"])
    assert row.status == "failed" and row.attempts == settings.WEBHOOK_MAX_ATTEMPTS
    assert "lost with its worker" in row.last_error
    assert receiver.requests == []
