"""DRF throttling: the token endpoint (scope ``auth``, per client address) and the push endpoints
``samples/`` and ``predict/`` (scope ``push``, per user). Past the rate: 429 with Retry-After, the error
shape, and nothing written.

DRF reads ``DEFAULT_THROTTLE_RATES`` once, into ``SimpleRateThrottle.THROTTLE_RATES``, when the module is
imported; overriding the setting alone would not reach it, so the tests patch that class attribute too.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.annotator.assertions import error_list
from tests.annotator.conftest import PASSWORD
from tests.annotator.security.conftest import World, snapshot

TOKEN = "/api/v1/auth/token/"
AUTH_RATE, PUSH_RATE = 3, 2


@pytest.fixture
def low_rates(settings: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    rates = {"auth": f"{AUTH_RATE}/min", "push": f"{PUSH_RATE}/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    return rates


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in error_list(response)[0]["message"].lower()


@pytest.mark.django_db
def test_the_token_endpoint_allows_the_rate_then_answers_429(low_rates, world: World, users):
    client = APIClient()
    wrong = {"username": "alice", "password": "not-her-password"}
    Token.objects.all().delete()

    statuses = [client.post(TOKEN, wrong, format="json").status_code for _ in range(AUTH_RATE)]
    throttled = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")

    assert statuses == [400] * AUTH_RATE
    assert_throttled(throttled)  # even with the right password: no guessing past the rate
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_a_forged_forwarded_for_header_does_not_reset_the_auth_budget(low_rates, world: World, users):
    """Without trusted proxies (NUM_PROXIES=0, the default) the throttle keys on the socket address, so a
    client cannot buy fresh attempts by sending a new X-Forwarded-For each time."""
    client = APIClient()
    wrong = {"username": "alice", "password": "not-her-password"}

    statuses = [client.post(TOKEN, wrong, format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
                for i in range(AUTH_RATE + 1)]

    assert statuses == [400] * AUTH_RATE + [429]


@pytest.mark.django_db
def test_the_auth_budget_is_per_client_address(low_rates, world: World, users):
    client = APIClient()
    wrong = {"username": "alice", "password": "not-her-password"}
    for _ in range(AUTH_RATE):
        client.post(TOKEN, wrong, format="json")

    assert_throttled(client.post(TOKEN, wrong, format="json"))
    other = client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json", REMOTE_ADDR="192.0.2.7")
    assert other.status_code == 200


@pytest.mark.django_db
def test_samples_pushes_past_the_rate_are_429_and_write_nothing(low_rates, world: World, api_client, users):
    client = api_client(users["reviewer"])
    url = f"/api/v1/projects/{world.project}/samples/"

    for i in range(PUSH_RATE):
        assert client.post(url, [{"text": f"sample {i}"}], format="json").status_code == 201
    before = snapshot()
    throttled = client.post(url, [{"text": "one too many"}], format="json")

    assert_throttled(throttled)
    assert snapshot() == before


@pytest.mark.django_db
def test_predict_and_samples_share_the_push_budget_of_one_user(low_rates, world: World, api_client, users):
    rita, alice = api_client(users["reviewer"]), api_client(users["admin"])
    p = world.project

    first = rita.post(f"/api/v1/projects/{p}/predict/", {"texts": ["hello"]}, format="json")
    second = rita.post(f"/api/v1/projects/{p}/samples/", [{"text": "a sample"}], format="json")
    before = snapshot()
    third = rita.post(f"/api/v1/projects/{p}/predict/", {"texts": ["hello"]}, format="json")
    fourth = rita.post(f"/api/v1/projects/{p}/samples/", [{"text": "another"}], format="json")

    assert (first.status_code, second.status_code) == (409, 201)  # 409: no version is promoted yet
    assert_throttled(third)
    assert_throttled(fourth)
    assert snapshot() == before
    # another user has a budget of their own
    assert alice.post(f"/api/v1/projects/{p}/samples/", [{"text": "hers"}], format="json").status_code == 201


@pytest.mark.django_db
def test_the_rest_of_the_api_is_not_throttled(low_rates, world: World, api_client, users):
    client = api_client(users["annotator"])

    statuses = {client.get(f"/api/v1/projects/{world.project}/queue/").status_code for _ in range(PUSH_RATE * 3)}

    assert statuses == {200}
