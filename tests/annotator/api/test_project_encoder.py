"""The project setting `encoder` (issue 16, part 1) through the API: a name from the operator's list, checked on save
(config and tokenizer load, weights there, max_length within the positions), its figures in the project's answer,
and a 400 naming the field with nothing saved otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from annotator.models import Project
from tests.annotator.openapi import assert_answer_matches_schema
from tests.tiny_bert import parameter_count

pytestmark = pytest.mark.django_db


def _patch(client: Any, project: Project, settings: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/projects/{project.id}/", {"settings": settings}, format="json")


def _errors(response: Any) -> dict[str, str]:
    return {e.get("field"): e["message"] for e in response.json()["errors"]}


def test_a_listed_encoder_is_saved_and_its_figures_shown(project, as_admin, tiny_encoders):
    # When the admin picks the tiny encoder, CLS pooling and 32 tokens
    response = _patch(as_admin, project, {"encoder": "tiny", "pooling": "cls", "max_length": 32})

    # Then it is saved, and the answer shows the directory's figures without the directory itself
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["settings"]["encoder"] == "tiny" and body["settings"]["pooling"] == "cls"
    assert body["encoder"] == {
        "name": "tiny", "model_type": "bert", "hidden_size": 32, "layers": 2, "max_positions": 64,
        "max_tokens": 64, "vocab_size": 45, "parameters": parameter_count(Path(tiny_encoders["tiny"])),
        "error": None}
    assert tiny_encoders["tiny"] not in response.content.decode()
    project.refresh_from_db()
    assert project.settings == {"encoder": "tiny", "pooling": "cls", "max_length": 32}
    assert_answer_matches_schema(response, "patch", "/api/v1/projects/{project_id}/")


def test_get_shows_the_default_minilm(project, as_annotator):
    response = as_annotator.get(f"/api/v1/projects/{project.id}/")

    assert response.status_code == 200
    encoder = response.json()["encoder"]
    assert encoder["name"] == "minilm" and encoder["error"] is None
    assert (encoder["hidden_size"], encoder["layers"], encoder["max_positions"]) == (384, 6, 512)
    assert 22_000_000 < encoder["parameters"] < 23_000_000
    assert_answer_matches_schema(response, "get", "/api/v1/projects/{project_id}/")


@pytest.mark.parametrize("name", ["nope", "/etc", "../minilm", "", 7, None])
def test_a_name_the_operator_does_not_list_is_a_400_naming_the_listed_ones(project, as_admin, tiny_encoders, name):
    response = _patch(as_admin, project, {"encoder": name, "lease_seconds": 60})

    assert response.status_code == 400
    message = _errors(response)["settings.encoder"]
    assert "minilm" in message and "tiny" in message and "not a path" in message
    project.refresh_from_db()
    assert project.settings == {}


def test_a_directory_path_is_not_a_name_even_when_it_is_listed(project, as_admin, tiny_encoders):
    response = _patch(as_admin, project, {"encoder": tiny_encoders["tiny"]})

    assert response.status_code == 400 and "settings.encoder" in _errors(response)
    assert Project.objects.get(pk=project.pk).settings == {}


@pytest.mark.parametrize(("name", "reason"), [
    ("no-config", "no config.json"),
    ("no-tokenizer", "no tokenizer files"),
    ("no-weights", "no weights"),
])
def test_a_listed_directory_that_does_not_load_is_a_400_and_nothing_is_saved(project, as_admin, tiny_encoders, name,
                                                                             reason):
    response = _patch(as_admin, project, {"encoder": name, "max_length": 32, "queue_size": 10})

    assert response.status_code == 400
    message = _errors(response)["settings.encoder"]
    assert f"encoder '{name}' cannot be used" in message and reason in message
    assert tiny_encoders[name] not in message, "the operator's paths stay private"
    project.refresh_from_db()
    assert project.settings == {}


def test_max_length_above_the_encoders_positions_is_a_400_on_max_length(project, as_admin, tiny_encoders):
    response = _patch(as_admin, project, {"encoder": "tiny", "max_length": 65})

    assert response.status_code == 400
    assert "at most 64 tokens" in _errors(response)["settings.max_length"]
    assert Project.objects.get(pk=project.pk).settings == {}


def test_a_smaller_encoder_under_the_current_max_length_is_a_400_on_encoder(project, as_admin, tiny_encoders):
    # Given the default max_length of 256 tokens
    # When the admin switches to an encoder with 64 positions and keeps it
    response = _patch(as_admin, project, {"encoder": "tiny"})

    # Then the encoder is refused, naming the limit
    assert response.status_code == 400
    assert "max_length 256" in _errors(response)["settings.encoder"]
    assert Project.objects.get(pk=project.pk).settings == {}


def test_raising_max_length_later_is_checked_against_the_saved_encoder(project, as_admin, tiny_encoders):
    assert _patch(as_admin, project, {"encoder": "tiny", "max_length": 64}).status_code == 200

    response = _patch(as_admin, project, {"max_length": 128})

    assert response.status_code == 400 and "settings.max_length" in _errors(response)
    assert Project.objects.get(pk=project.pk).setting("max_length") == 64


def test_a_bad_pooling_is_a_400(project, as_admin):
    response = _patch(as_admin, project, {"pooling": "max"})

    assert response.status_code == 400
    assert _errors(response)["settings.pooling"] == "must be one of mean, cls"


def test_creating_a_project_with_a_broken_encoder_creates_nothing(as_admin, tiny_encoders):
    response = as_admin.post("/api/v1/projects/", {"name": "p", "task": "single_label", "labels": ["a", "b"],
                                                   "settings": {"encoder": "no-config", "max_length": 32}},
                             format="json")

    assert response.status_code == 400 and "settings.encoder" in _errors(response)
    assert not Project.objects.exists()


def test_creating_a_project_with_a_listed_encoder(as_admin, tiny_encoders):
    response = as_admin.post("/api/v1/projects/", {"name": "p", "task": "single_label", "labels": ["a", "b"],
                                                   "settings": {"encoder": "tiny-b", "max_length": 48}},
                             format="json")

    assert response.status_code == 201, response.content
    assert response.json()["encoder"]["name"] == "tiny-b" and response.json()["encoder"]["hidden_size"] == 32


def test_an_encoder_the_operator_removed_is_shown_with_the_reason_and_other_settings_still_save(
        project, as_admin, tiny_encoders, settings):
    # Given a project on the tiny encoder, which the operator then takes off the list
    assert _patch(as_admin, project, {"encoder": "tiny", "max_length": 32}).status_code == 200
    settings.ENCODERS = {"minilm": settings.ENCODERS["minilm"]}

    # When the admin reads the project and changes an unrelated setting
    shown = as_admin.get(f"/api/v1/projects/{project.id}/")
    changed = _patch(as_admin, project, {"queue_size": 20})

    # Then the answer says why the encoder cannot be used, and the unrelated change is saved
    assert shown.status_code == 200
    assert shown.json()["encoder"] == {"name": "tiny", "error": shown.json()["encoder"]["error"]}
    assert "unknown encoder 'tiny'" in shown.json()["encoder"]["error"]
    assert changed.status_code == 200
    assert Project.objects.get(pk=project.pk).setting("queue_size") == 20


@pytest.mark.parametrize("client", ["as_reviewer", "as_annotator"])
def test_only_admins_change_the_encoder(project, tiny_encoders, request, client):
    response = _patch(request.getfixturevalue(client), project, {"encoder": "tiny", "max_length": 32})

    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).settings == {}


def test_outsiders_do_not_see_the_project(project, as_outsider, tiny_encoders):
    assert _patch(as_outsider, project, {"encoder": "tiny", "max_length": 32}).status_code == 404
    assert as_outsider.get(f"/api/v1/projects/{project.id}/").status_code == 404
