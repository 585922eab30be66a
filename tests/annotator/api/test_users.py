"""POST /api/v1/users/: staff create users."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.annotator.assertions import error_list

URL = "/api/v1/users/"


@pytest.fixture
def as_staff(api_client, make_user):
    return api_client(make_user("root", is_staff=True))


@pytest.mark.django_db
def test_staff_create_a_user_who_can_then_log_in(as_staff, api_client):
    response = as_staff.post(
        URL, {"username": "newbie", "password": "long-enough-pw", "email": "n@example.com"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["username"], body["email"]) == ("newbie", "n@example.com") and isinstance(body["id"], int)
    login = api_client().post(
        "/api/v1/auth/token/", {"username": "newbie", "password": "long-enough-pw"}, format="json"
    )
    assert login.status_code == 200 and login.json()["token"]


@pytest.mark.django_db
def test_email_is_optional(as_staff):
    response = as_staff.post(URL, {"username": "quiet", "password": "long-enough-pw"}, format="json")

    assert response.status_code == 201
    assert get_user_model().objects.get(username="quiet").email == ""


@pytest.mark.django_db
def test_a_project_admin_who_is_not_staff_cannot_create_users(as_admin, project):
    response = as_admin.post(URL, {"username": "sneaky", "password": "long-enough-pw"}, format="json")

    assert response.status_code == 403
    error_list(response)
    assert not get_user_model().objects.filter(username="sneaky").exists()


@pytest.mark.django_db
def test_anonymous_callers_cannot_create_users(api_client):
    response = api_client().post(URL, {"username": "sneaky", "password": "long-enough-pw"}, format="json")

    assert response.status_code == 401
    assert not get_user_model().objects.filter(username="sneaky").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "root", "password": "long-enough-pw"}, "username"),
        ({"username": "shorty", "password": "short"}, "password"),
        ({"password": "long-enough-pw"}, "username"),
        ({"username": "   ", "password": "long-enough-pw"}, "username"),
        ({"username": "mail", "password": "long-enough-pw", "email": 5}, "email"),
    ],
    ids=["taken", "short password", "no username", "blank username", "email not a string"],
)
def test_bad_user_requests_are_refused(as_staff, body, field):
    before = get_user_model().objects.count()

    response = as_staff.post(URL, body, format="json")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == field
    assert get_user_model().objects.count() == before


@pytest.mark.django_db
def test_a_user_request_that_is_not_an_object_is_refused(as_staff):
    response = as_staff.post(URL, [], format="json")

    assert response.status_code == 400
    error_list(response)
