"""/api/v1/projects/: create, list, detail with counts, settings."""

from __future__ import annotations

import pytest

from annotator.models import Annotation, LabelClass, Membership, Project, Role
from annotator.project_settings import default
from tests.annotator.assertions import error_list

URL = "/api/v1/projects/"


def detail_url(project_id: int) -> str:
    return f"{URL}{project_id}/"


@pytest.mark.django_db
def test_the_creator_of_a_project_becomes_its_admin(as_reviewer, reviewer):
    response = as_reviewer.post(
        URL,
        {"name": "  Support tickets ", "task": "single_label", "labels": ["bug", "question", "praise"]},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Support tickets"
    assert body["task"] == "single_label"
    assert body["labels"] == ["bug", "question", "praise"]
    assert body["role"] == "admin"
    assert body["members"] == [{"username": "rita", "role": "admin"}]
    assert body["settings"]["max_text_chars"] == 20_000
    assert (body["examples"], body["labeled"], body["queued"], body["model_version"]) == (0, 0, 0, None)
    assert Membership.objects.get(project_id=body["id"], user=reviewer).role == Role.ADMIN


@pytest.mark.django_db
def test_a_multi_label_project_with_settings(as_admin):
    response = as_admin.post(
        URL,
        {
            "name": "Topics",
            "task": "multi_label",
            "labels": ["a", "b"],
            "settings": {"max_text_chars": 500, "guidelines": "Tag every topic."},
        },
        format="json",
    )

    assert response.status_code == 201
    settings = response.json()["settings"]
    assert settings["max_text_chars"] == 500 and settings["guidelines"] == "Tag every topic."
    assert settings["lease_seconds"] == default("lease_seconds")


BAD_PROJECTS = {
    "no name": ({"task": "single_label", "labels": ["a"]}, "name"),
    "blank name": ({"name": "  ", "task": "single_label", "labels": ["a"]}, "name"),
    "long name": ({"name": "n" * 201, "task": "single_label", "labels": ["a"]}, "name"),
    "unknown task": ({"name": "P", "task": "regression", "labels": ["a"]}, "task"),
    "no labels": ({"name": "P", "task": "single_label"}, "labels"),
    "empty labels": ({"name": "P", "task": "single_label", "labels": []}, "labels"),
    "labels not a list": ({"name": "P", "task": "single_label", "labels": "a,b"}, "labels"),
    "duplicate label": ({"name": "P", "task": "single_label", "labels": ["a", "b", "a"]}, "labels"),
    "blank label": ({"name": "P", "task": "single_label", "labels": ["a", " "]}, "labels"),
    "label not a string": ({"name": "P", "task": "single_label", "labels": ["a", 3]}, "labels"),
    "label too long": ({"name": "P", "task": "single_label", "labels": ["l" * 101]}, "labels"),
    "unknown setting": (
        {"name": "P", "task": "single_label", "labels": ["a"], "settings": {"colour": 1}},
        "settings.colour",
    ),
    "text limit zero": (
        {"name": "P", "task": "single_label", "labels": ["a"], "settings": {"max_text_chars": 0}},
        "settings.max_text_chars",
    ),
    "text limit as string": (
        {"name": "P", "task": "single_label", "labels": ["a"], "settings": {"max_text_chars": "100"}},
        "settings.max_text_chars",
    ),
    "settings not an object": (
        {"name": "P", "task": "single_label", "labels": ["a"], "settings": [1]},
        "settings",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), list(BAD_PROJECTS.values()), ids=list(BAD_PROJECTS))
def test_a_bad_project_is_refused_naming_the_field_and_nothing_is_created(as_admin, body, field):
    response = as_admin.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in {e.get("field") for e in error_list(response)}
    assert not Project.objects.exists()
    assert not LabelClass.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"name": "bad\x00name", "task": "single_label", "labels": ["a"]},
        {"name": "P", "task": "single_label", "labels": ["a\x00b"]},
        {"name": "P", "task": "single_label", "labels": ["a"], "settings": {"guidelines": "x\x00y"}},
    ],
    ids=["in name", "in a label", "in guidelines"],
)
def test_a_nul_character_anywhere_in_a_project_is_a_400_not_a_crash(as_admin, body):
    response = as_admin.post(URL, body, format="json")

    assert response.status_code == 400
    assert "NUL" in error_list(response)[0]["message"]
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_a_project_body_that_is_not_an_object_is_refused(as_admin):
    response = as_admin.post(URL, ["Reviews"], format="json")

    assert response.status_code == 400
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_the_list_shows_only_projects_the_caller_is_a_member_of(make_project, admin, reviewer, api_client):
    mine = make_project(admin, name="Mine")
    shared = make_project(admin, name="Shared", members={reviewer: Role.ANNOTATOR})
    make_project(reviewer, name="Rita's")

    response = api_client(admin).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert [(p["id"], p["role"]) for p in body["results"]] == [(mine.id, "admin"), (shared.id, "admin")]
    assert [p["role"] for p in api_client(reviewer).get(URL).json()["results"]] == ["annotator", "admin"]


@pytest.mark.django_db
def test_the_project_list_is_paginated(make_project, admin, as_admin):
    for i in range(3):
        make_project(admin, name=f"P{i}")

    first = as_admin.get(URL, {"page_size": 2}).json()
    second = as_admin.get(first["next"]).json()

    assert first["count"] == 3 and len(first["results"]) == 2
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"]


@pytest.mark.django_db
def test_project_detail_counts_examples_and_labeled_examples(project, admin, as_annotator, make_examples):
    make_examples(
        project, admin, [{"text": "a", "label": "positive"}, {"text": "b"}, {"text": "c", "label": "neutral"}]
    )

    response = as_annotator.get(detail_url(project.id))

    assert response.status_code == 200
    body = response.json()
    assert (body["examples"], body["labeled"], body["queued"]) == (3, 2, 0)
    assert body["counts"]["annotations"] == 2
    assert body["role"] == "annotator"
    assert body["labels"] == ["positive", "negative", "neutral"]


@pytest.mark.django_db
def test_a_project_the_caller_cannot_see_is_404_like_one_that_does_not_exist(project, as_outsider, as_admin):
    hidden = as_outsider.get(detail_url(project.id))
    missing = as_admin.get(detail_url(project.id + 999))

    assert hidden.status_code == missing.status_code == 404
    assert error_list(hidden) == error_list(missing)


@pytest.mark.django_db
def test_an_admin_changes_settings_and_other_settings_are_kept(project, as_admin):
    response = as_admin.patch(detail_url(project.id), {"settings": {"max_text_chars": 100}}, format="json")

    assert response.status_code == 200
    project.refresh_from_db()
    assert project.setting("max_text_chars") == 100
    assert project.setting("lease_seconds") == default("lease_seconds")


@pytest.mark.django_db
def test_a_changed_text_limit_applies_to_the_next_import(project, as_admin):
    as_admin.patch(detail_url(project.id), {"settings": {"max_text_chars": 5}}, format="json")

    response = as_admin.post(f"/api/v1/projects/{project.id}/examples/", [{"text": "123456"}], format="json")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "text"


@pytest.mark.django_db
def test_invalid_settings_change_nothing(project, as_admin):
    response = as_admin.patch(
        detail_url(project.id), {"settings": {"max_text_chars": 50, "lease_seconds": 1}}, format="json"
    )

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "settings.lease_seconds"
    project.refresh_from_db()
    assert project.setting("max_text_chars") == 20_000


def test_labels_with_descriptions_on_create_come_back_in_label_classes(as_admin):
    response = as_admin.post("/api/v1/projects/", {
        "name": "Tickets", "task": "single_label",
        "labels": [{"name": "billing", "description": "money", "example": "charged twice"}, "bug"]}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["labels"] == ["billing", "bug"]
    assert body["label_classes"] == [
        {"name": "billing", "position": 0, "description": "money", "example": "charged twice", "retired": False},
        {"name": "bug", "position": 1, "description": "", "example": "", "retired": False}]


def test_a_bad_label_object_is_a_400_naming_its_index_and_nothing_is_created(as_admin):
    response = as_admin.post("/api/v1/projects/", {
        "name": "Tickets", "task": "single_label",
        "labels": ["ok", {"name": "x", "colour": "red"}, {"description": "no name"}]}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [1, 2]
    assert "unknown label field(s): colour" in errors[0]["message"]
    assert not Project.objects.filter(name="Tickets").exists()


def test_patch_renames_retires_and_adds_labels_keeping_every_annotation(as_admin, project, admin, make_examples):
    make_examples(project, admin, [{"text": "so so", "label": "neutral"}])

    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {"labels": [
        {"name": "neutral", "new_name": "meh", "description": "neither"},
        {"name": "negative", "retired": True},
        {"name": "mixed", "description": "both"}]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["labels"] == ["positive", "negative", "meh", "mixed"]
    assert [(c["name"], c["retired"]) for c in body["label_classes"]] == [
        ("positive", False), ("negative", True), ("meh", False), ("mixed", False)]
    assert list(Annotation.objects.values_list("labels", flat=True)) == [["meh"]]
    [example] = as_admin.get(f"/api/v1/projects/{project.id}/examples/").json()["results"]
    assert example["label"] == "meh"
    refused = as_admin.post(f"/api/v1/examples/{example['id']}/annotations/", {"label": "negative"}, format="json")
    assert refused.status_code == 400 and "unknown label 'negative'" in refused.json()["errors"][0]["message"]


def test_a_bad_label_edit_changes_nothing_not_even_the_settings(as_admin, project):
    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {
        "settings": {"lease_seconds": 61},
        "labels": [{"name": "neutral", "description": "fine"}, {"name": "positive", "new_name": "negative"}]},
        format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 1
    assert "already exists" in response.json()["errors"][0]["message"]
    project.refresh_from_db()
    assert project.setting("lease_seconds") != 61
    assert not project.label_classes.exclude(description="").exists()
