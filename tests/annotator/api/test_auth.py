"""POST /api/v1/auth/token/ and /api/v1/auth/token/revoke/: token auth for clients."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle

from tests.annotator.assertions import error_list

TOKEN_URL = "/api/v1/auth/token/"
REVOKE_URL = "/api/v1/auth/token/revoke/"
PASSWORD = "correct-horse-battery"  # the conftest's password for every user


@pytest.mark.django_db
def test_a_user_gets_a_token_that_authenticates_api_calls(api_client, admin, project):
    client = api_client()

    response = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    projects = client.get("/api/v1/projects/")
    assert projects.status_code == 200
    assert [p["id"] for p in projects.json()["results"]] == [project.id]


@pytest.mark.django_db
def test_asking_twice_returns_the_same_token(api_client, admin):
    client = api_client()
    body = {"username": "alice", "password": PASSWORD}

    first = client.post(TOKEN_URL, body, format="json").json()["token"]
    second = client.post(TOKEN_URL, body, format="json").json()["token"]

    assert first == second


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong-password"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice"},
        {"username": "", "password": PASSWORD},
        {"username": ["alice"], "password": PASSWORD},
    ],
    ids=["wrong password", "unknown user", "no password", "empty username", "username as list"],
)
def test_bad_credentials_are_refused_without_a_token(api_client, admin, body):
    response = api_client().post(TOKEN_URL, body, format="json")

    assert response.status_code == 400
    error_list(response)
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_an_inactive_user_gets_no_token(api_client, make_user):
    make_user("gone", is_active=False)

    response = api_client().post(TOKEN_URL, {"username": "gone", "password": PASSWORD}, format="json")

    assert response.status_code == 400
    assert not Token.objects.exists()


@pytest.mark.django_db
def test_a_token_request_that_is_not_an_object_is_refused(api_client):
    response = api_client().post(TOKEN_URL, ["alice", PASSWORD], format="json")

    assert response.status_code == 400
    error_list(response)


@pytest.mark.django_db
def test_token_requests_are_throttled(api_client, admin):
    allowed = int(ScopedRateThrottle.THROTTLE_RATES["auth"].split("/")[0])  # THROTTLE_AUTH, 30/min by default
    client = api_client()
    body = {"username": "alice", "password": "wrong-password"}

    statuses = [client.post(TOKEN_URL, body, format="json").status_code for _ in range(allowed + 1)]

    assert statuses[:allowed] == [400] * allowed
    assert statuses[allowed] == 429
    assert error_list(client.post(TOKEN_URL, body, format="json"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", [None, "Token not-a-real-token", "Bearer abc"], ids=["none", "unknown", "scheme"]
)
def test_api_calls_without_a_valid_token_are_401(api_client, header):
    client = api_client()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/projects/")

    assert response.status_code == 401
    error_list(response)


@pytest.mark.django_db
def test_a_revoked_token_stops_working_and_a_new_one_can_be_issued(api_client, admin):
    client = api_client()
    old = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {old}")

    revoked = client.post(REVOKE_URL)

    assert revoked.status_code == 204
    assert client.get("/api/v1/projects/").status_code == 401
    client.credentials()
    new = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json").json()["token"]
    assert new != old


@pytest.mark.django_db
def test_revoking_needs_authentication(api_client):
    assert api_client().post(REVOKE_URL).status_code == 401


@pytest.mark.django_db
def test_revoking_one_users_token_leaves_others_working(api_client, admin, reviewer):
    alice, rita = api_client(admin), api_client(reviewer)

    alice.post(REVOKE_URL)

    assert rita.get("/api/v1/projects/").status_code == 200
    assert alice.get("/api/v1/projects/").status_code == 401
