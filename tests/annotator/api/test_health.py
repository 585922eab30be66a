"""GET /api/v1/health/: database and broker status, no auth."""

from __future__ import annotations

import socket

import pytest
from django.test import override_settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_health_reports_database_and_broker_ok_without_auth(api_client):
    response = api_client().get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_health_reports_the_broker_down_when_redis_does_not_answer(api_client):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        response = api_client().get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json()["broker"] == "down"
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_health_reports_the_broker_down_for_a_broken_redis_url(api_client):
    with override_settings(REDIS_URL="not-a-url"):
        response = api_client().get("/api/v1/health/")

    assert response.json()["broker"] == "down"
