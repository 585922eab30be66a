"""The role matrix: admin, reviewer, annotator and non-member against every project endpoint.

Non-members get 404 (the project does not exist for them); members whose role is too low get 403;
annotators reach single examples only through their own queue work, so other examples are 404 to them.
A refused request changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from annotator.models import Membership, Project, Role
from annotator.services.projects import member_set
from tests.annotator.assertions import counts, error_list

ROLES = ["admin", "reviewer", "annotator", "outsider"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # formatted with project and example ids
    body: Any
    expected: dict[str, int]


CALLS = {
    "project detail": Call(
        "get",
        "/api/v1/projects/{p}/",
        None,
        {"admin": 200, "reviewer": 200, "annotator": 200, "outsider": 404},
    ),
    "project settings": Call(
        "patch",
        "/api/v1/projects/{p}/",
        {"settings": {"lease_seconds": 60}},
        {"admin": 200, "reviewer": 403, "annotator": 403, "outsider": 404},
    ),
    "list members": Call(
        "get",
        "/api/v1/projects/{p}/members/",
        None,
        {"admin": 200, "reviewer": 200, "annotator": 403, "outsider": 404},
    ),
    "add member": Call(
        "post",
        "/api/v1/projects/{p}/members/",
        {"username": "nora", "role": "admin"},
        {"admin": 201, "reviewer": 403, "annotator": 403, "outsider": 404},
    ),
    "remove member": Call(
        "delete",
        "/api/v1/projects/{p}/members/",
        {"username": "sam"},
        {"admin": 204, "reviewer": 403, "annotator": 403, "outsider": 404},
    ),
    "list examples": Call(
        "get",
        "/api/v1/projects/{p}/examples/",
        None,
        {"admin": 200, "reviewer": 200, "annotator": 403, "outsider": 404},
    ),
    "bulk import": Call(
        "post",
        "/api/v1/projects/{p}/examples/",
        [{"text": "new row", "label": "positive"}],
        {"admin": 201, "reviewer": 201, "annotator": 403, "outsider": 404},
    ),
    "export": Call(
        "get",
        "/api/v1/projects/{p}/export/?format=jsonl",
        None,
        {"admin": 200, "reviewer": 200, "annotator": 403, "outsider": 404},
    ),
    "example detail": Call(
        "get",
        "/api/v1/examples/{e}/",
        None,
        {"admin": 200, "reviewer": 200, "annotator": 404, "outsider": 404},
    ),
    "annotate": Call(
        "post",
        "/api/v1/examples/{e}/annotations/",
        {"label": "negative"},
        {"admin": 201, "reviewer": 201, "annotator": 404, "outsider": 404},
    ),
    "create user": Call(
        "post",
        "/api/v1/users/",
        {"username": "made", "password": "long-enough-pw"},
        {"admin": 403, "reviewer": 403, "annotator": 403, "outsider": 403},
    ),
}


@pytest.fixture
def world(project, admin, make_user, make_examples):
    """The standard project plus a spare member to remove, a user to add, and one example."""
    make_user("sam")
    make_user("nora")
    member_set(project=project, username="sam", role=Role.ANNOTATOR)
    [example] = make_examples(
        project, admin, [{"external_id": "x", "text": "An example", "label": "positive"}]
    )
    return project, example


def state(project: Project) -> tuple[Any, ...]:
    project.refresh_from_db()
    members = sorted(Membership.objects.filter(project=project).values_list("user__username", "role"))
    return (*counts(), members, project.settings)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
def test_role_matrix(world, role, call, request):
    project, example = world
    client = request.getfixturevalue(f"as_{role}")
    before = state(project)

    response = getattr(client, call.method)(
        call.path.format(p=project.id, e=example.id), call.body, format="json"
    )

    assert response.status_code == call.expected[role]
    if response.status_code >= 400:
        error_list(response)
        assert state(project) == before, "a refused request must change nothing"
    else:
        assert response.status_code < 300


@pytest.mark.django_db
def test_every_member_lists_the_project_and_a_non_member_lists_nothing(world, request):
    project, _ = world

    listed = {
        role: request.getfixturevalue(f"as_{role}").get("/api/v1/projects/").json()["results"]
        for role in ROLES
    }

    assert {role: [p["id"] for p in rows] for role, rows in listed.items()} == {
        "admin": [project.id],
        "reviewer": [project.id],
        "annotator": [project.id],
        "outsider": [],
    }
    assert [p["role"] for p in listed["annotator"]] == ["annotator"]


@pytest.mark.django_db
def test_any_user_can_create_a_project_and_becomes_its_admin(as_annotator, annotator):
    response = as_annotator.post(
        "/api/v1/projects/", {"name": "Own", "task": "single_label", "labels": ["a"]}, format="json"
    )

    assert response.status_code == 201
    assert Membership.objects.get(project_id=response.json()["id"], user=annotator).role == Role.ADMIN


@pytest.mark.django_db
def test_an_annotator_promoted_to_reviewer_gains_reviewer_endpoints_at_once(world, as_admin, as_annotator):
    project, _ = world
    assert as_annotator.get(f"/api/v1/projects/{project.id}/examples/").status_code == 403

    as_admin.post(
        f"/api/v1/projects/{project.id}/members/", {"username": "anna", "role": "reviewer"}, format="json"
    )

    assert as_annotator.get(f"/api/v1/projects/{project.id}/examples/").status_code == 200
