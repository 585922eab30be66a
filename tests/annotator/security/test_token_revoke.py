"""A revoked token answers 401 on every authenticated endpoint, writes nothing, and a new one can be had.

The endpoints are the matrix's (every authenticated API endpoint the resolver serves, each variant);
``tests/annotator/api/test_auth.py`` checks the revoke round trip on one endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.annotator.conftest import PASSWORD
from tests.annotator.security.conftest import MEMBERS, USERNAMES, World, snapshot
from tests.annotator.security.test_api_matrix import CASES, _answer, _body, api_endpoints

REVOKE = "/api/v1/auth/token/revoke/"
TOKEN = "/api/v1/auth/token/"
AUTHENTICATED = [case for case in CASES if case.expected["anonymous"] == 401]


def test_every_authenticated_endpoint_is_in_the_revocation_sweep():
    swept = {(case.route, case.method) for case in AUTHENTICATED}
    open_to_all = {(case.route, case.method) for case in CASES if case.expected["anonymous"] != 401}

    assert swept | open_to_all == api_endpoints()
    assert open_to_all == {("api/v1/health/", "get"), ("api/v1/auth/token/", "post"),
                           ("api/schema/", "get"), ("api/docs/", "get")}


@pytest.mark.django_db
@pytest.mark.parametrize("role", MEMBERS)
def test_a_revoked_token_is_401_everywhere_and_a_new_one_works(role: str, world: World, users: dict[str, Any]):
    client = APIClient()
    old = client.post(TOKEN, {"username": USERNAMES[role], "password": PASSWORD}, format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert client.get(f"/api/v1/projects/{world.project}/").status_code == 200

    assert client.post(REVOKE).status_code == 204
    assert not Token.objects.filter(key=old).exists()

    ids = world.ids(role)
    before = snapshot()
    answers = {case.name: _answer(client, case, case.path.format(**ids), _body(case, role, ids))[0].status_code
               for case in AUTHENTICATED}
    assert answers == {case.name: 401 for case in AUTHENTICATED}
    assert snapshot() == before, "a request with a revoked token wrote something"

    client.credentials()
    new = client.post(TOKEN, {"username": USERNAMES[role], "password": PASSWORD}, format="json").json()["token"]
    assert new != old
    client.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert client.get(f"/api/v1/projects/{world.project}/").status_code == 200
    assert client.get(f"/api/v1/projects/{world.project}/queue/").status_code == 200


@pytest.mark.django_db
def test_revoking_ends_only_the_callers_token(world: World, users: dict[str, Any], api_client):
    alice, rita = api_client(users["admin"]), api_client(users["reviewer"])

    assert alice.post(REVOKE).status_code == 204

    assert alice.get(f"/api/v1/projects/{world.project}/").status_code == 401
    assert rita.get(f"/api/v1/projects/{world.project}/").status_code == 200
    assert list(Token.objects.values_list("user__username", flat=True)) == ["rita"]
