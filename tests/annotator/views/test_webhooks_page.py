"""The webhooks page: admins add an endpoint and see its secret once, pick events, read an escaped delivery
log, and redeliver; a refused target is shown next to the URL field."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from annotator.models import WebhookDelivery, WebhookEndpoint
from tests.annotator.webhook_receiver import fake_dns


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34"], "intranet.example.test": ["10.1.2.3"]})


def _page(project: Any) -> str:
    return reverse("webhooks", args=[project.id])


def test_an_admin_adds_an_endpoint_and_sees_the_secret_only_in_that_answer(project, admin, page_client):
    client = page_client(admin)

    added = client.post(_page(project), {"url": "https://hooks.example.test/in", "events": ["job.failed", "queue.low"],
                                         "description": "pager"})

    assert added.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["job.failed", "queue.low"] and endpoint.created_by == admin
    html = added.content.decode()
    assert endpoint.secret in html and "not shown again" in html
    later = client.get(_page(project)).content.decode()
    assert endpoint.secret not in later and "https://hooks.example.test/in" in later


def test_a_private_target_is_refused_next_to_the_url_field(project, admin, page_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = page_client(admin).post(_page(project), {"url": "http://intranet.example.test/hook",
                                                        "events": ["job.failed"]})

    assert response.status_code == 422
    html = response.content.decode()
    assert "resolves to 10.1.2.3, a private address" in html
    assert 'value="http://intranet.example.test/hook"' in html  # the form keeps what was typed
    assert not WebhookEndpoint.objects.exists()


def test_the_log_escapes_what_receivers_answer_and_offers_redelivery(project, admin, page_client):
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.test/in", secret="s",
                                              events=["job.failed"], description="<b>ops</b>")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="job.failed", payload={"data": {}},
                                              status="failed", attempts=5, last_response_code=500,
                                              last_error="HTTP 500: <script>alert(1)</script>")
    client = page_client(admin)

    html = client.get(_page(project) + "?status=failed").content.decode()

    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>ops</b>" not in html and "&lt;b&gt;ops&lt;/b&gt;" in html
    assert reverse("webhook-redeliver", args=[project.id, delivery.id]) in html
    # Every control is a native, labelled form element (reachable with Tab)
    assert '<label for="hook-url">' in html and '<select name="status" id="log-status">' in html
    assert "Redeliver job.failed" in html

    response = client.post(reverse("webhook-redeliver", args=[project.id, delivery.id]))

    assert response.status_code == 302
    assert WebhookDelivery.objects.filter(redelivery_of=delivery).count() == 1
    pending = client.get(_page(project) + "?status=pending").content.decode()
    assert pending.count("Redeliver job.failed") == 1 and "HTTP 500" not in pending


def test_saving_events_and_deactivating(project, admin, page_client):
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.test/in", secret="s",
                                              events=["job.failed"])

    response = page_client(admin).post(reverse("webhook-update", args=[project.id, endpoint.id]),
                                       {"events": ["drift.alert", "version.promoted"]})

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.events == ["version.promoted", "drift.alert"] and endpoint.active is False


def test_the_overview_settings_link_to_the_webhooks_page_for_admins_only(project, admin, reviewer, page_client):
    url = reverse("project-overview", args=[project.id])

    assert _page(project) in page_client(admin).get(url).content.decode()
    assert _page(project) not in page_client(reviewer).get(url).content.decode()
    assert page_client(reviewer).get(_page(project)).status_code == 404
