"""/api/v1/projects/{id}/members/: list (reviewer), add or change a role and remove (admin)."""

from __future__ import annotations

import pytest

from annotator.models import Membership, Role
from tests.annotator.assertions import error_list


def url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/members/"


def roles(project) -> dict[str, str]:
    return dict(Membership.objects.filter(project=project).values_list("user__username", "role"))


@pytest.mark.django_db
def test_an_admin_adds_a_member_who_then_sees_the_project(project, as_admin, make_user, api_client):
    newcomer = make_user("nora")

    response = as_admin.post(url(project.id), {"username": "nora", "role": "annotator"}, format="json")

    assert response.status_code == 201
    assert response.json() == {"username": "nora", "role": "annotator"}
    seen = api_client(newcomer).get(f"/api/v1/projects/{project.id}/")
    assert seen.status_code == 200 and seen.json()["role"] == "annotator"


@pytest.mark.django_db
def test_posting_an_existing_member_changes_their_role(project, as_admin, annotator, api_client):
    response = as_admin.post(url(project.id), {"username": "anna", "role": "reviewer"}, format="json")

    assert response.status_code == 201
    assert roles(project)["anna"] == "reviewer"
    assert api_client(annotator).get(f"/api/v1/projects/{project.id}/examples/").status_code == 200


@pytest.mark.django_db
def test_reviewers_list_members_sorted_by_name(project, as_reviewer):
    response = as_reviewer.get(url(project.id))

    assert response.status_code == 200
    nobody_measured = {"annotator_quality": None, "agreement_with_consensus": None}
    assert response.json() == [
        {"username": "alice", "role": "admin", **nobody_measured},
        {"username": "anna", "role": "annotator", **nobody_measured},
        {"username": "rita", "role": "reviewer", **nobody_measured},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ghost", "role": "annotator"}, "username"),
        ({"username": "anna", "role": "owner"}, "role"),
        ({"role": "annotator"}, "username"),
        ({"username": "anna"}, "role"),
        ({"username": 7, "role": "annotator"}, "username"),
    ],
    ids=["unknown user", "unknown role", "no username", "no role", "username not a string"],
)
def test_bad_member_requests_are_refused_and_change_nothing(project, as_admin, body, field):
    before = roles(project)

    response = as_admin.post(url(project.id), body, format="json")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == field
    assert roles(project) == before


@pytest.mark.django_db
def test_a_nul_character_in_a_username_is_a_400_not_a_crash(project, as_admin):
    before = roles(project)

    response = as_admin.post(url(project.id), {"username": "an\x00na", "role": "admin"}, format="json")

    assert response.status_code == 400
    assert roles(project) == before


@pytest.mark.django_db
def test_the_last_admin_cannot_step_down_or_be_removed(project, as_admin):
    demoted = as_admin.post(url(project.id), {"username": "alice", "role": "reviewer"}, format="json")
    removed = as_admin.delete(url(project.id), {"username": "alice"}, format="json")

    assert demoted.status_code == 400 and removed.status_code == 400
    assert roles(project)["alice"] == "admin"


@pytest.mark.django_db
def test_an_admin_can_step_down_once_there_is_another_admin(project, as_admin):
    as_admin.post(url(project.id), {"username": "rita", "role": "admin"}, format="json")

    response = as_admin.post(url(project.id), {"username": "alice", "role": "annotator"}, format="json")

    assert response.status_code == 201
    assert roles(project) == {"alice": "annotator", "rita": "admin", "anna": "annotator"}


@pytest.mark.django_db
def test_a_removed_member_no_longer_sees_the_project(project, as_admin, as_annotator):
    response = as_admin.delete(url(project.id), {"username": "anna"}, format="json")

    assert response.status_code == 204
    assert "anna" not in roles(project)
    assert as_annotator.get(f"/api/v1/projects/{project.id}/").status_code == 404


@pytest.mark.django_db
def test_removing_someone_who_is_not_a_member_is_refused(project, as_admin, outsider):
    response = as_admin.delete(url(project.id), {"username": "oscar"}, format="json")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "username"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("caller", "status"), [("as_reviewer", 403), ("as_annotator", 403), ("as_outsider", 404)]
)
def test_only_admins_add_members(project, outsider, caller, status, request):
    client = request.getfixturevalue(caller)
    before = roles(project)

    response = client.post(url(project.id), {"username": "oscar", "role": Role.ADMIN}, format="json")

    assert response.status_code == status
    error_list(response)
    assert roles(project) == before
