"""POST /api/v1/projects/{id}/examples/: bodies that are refused whole (malformed JSON, not a list, empty, too many
rows, too many bytes) and characters the database cannot store, each refused with nothing written."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from annotator.models import Example
from tests.annotator.api.examples_import import nested, post_raw, post_rows
from tests.annotator.assertions import counts, error_list


# --- bad bodies -----------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        '[{"text": "unterminated"',
        "{'text': 'single quotes'}",
        "",
    ],
    ids=["truncated", "single quotes", "empty body"],
)
def test_malformed_json_is_refused(project, as_admin, existing, body):
    before = counts()

    response = post_raw(as_admin, project.id, body)

    assert response.status_code == 400
    assert "JSON" in error_list(response)[0]["message"]
    assert counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ['"just a string"', '{"text": "an object, not a list"}', "42", "null"],
    ids=["string", "object", "number", "null"],
)
def test_a_body_that_is_not_a_list_of_rows_is_refused(project, as_admin, existing, body):
    before = counts()

    response = post_raw(as_admin, project.id, body)

    assert response.status_code == 400
    assert "list" in error_list(response)[0]["message"]
    assert counts() == before


@pytest.mark.django_db
def test_an_empty_batch_is_refused(project, as_admin, existing):
    before = counts()

    response = post_rows(as_admin, project.id, [])

    assert response.status_code == 400
    error_list(response)
    assert counts() == before


@pytest.mark.django_db
def test_a_batch_of_10001_rows_is_refused_and_10000_are_accepted(project, as_admin, existing):
    before = counts()

    refused = post_rows(as_admin, project.id, [{"text": f"row {i}"} for i in range(10_001)])

    assert refused.status_code == 400
    assert "10,000" in error_list(refused)[0]["message"]
    assert counts() == before

    accepted = post_rows(as_admin, project.id, [{"text": f"row {i}"} for i in range(10_000)])

    assert accepted.status_code == 201
    assert accepted.json()["created"] == 10_000


@pytest.mark.django_db
def test_a_body_over_10_mb_is_413_and_nothing_is_written(project, as_admin, existing):
    row = json.dumps({"text": "z" * 10_000})
    body = "[" + ",".join([row] * 1_100) + "]"  # about 11 MB
    assert len(body.encode()) > 10 * 1024 * 1024
    before = counts()

    response = post_raw(as_admin, project.id, body)

    assert response.status_code == 413
    error_list(response)
    assert counts() == before


@pytest.mark.django_db
@override_settings(MAX_REQUEST_BYTES=1000)
def test_the_body_limit_comes_from_settings(project, as_admin):
    response = post_rows(as_admin, project.id, [{"text": "w" * 2000}])

    assert response.status_code == 413
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_unknown_project_is_404(as_admin, project):
    response = post_rows(as_admin, project.id + 1000, [{"text": "hello"}])

    assert response.status_code == 404
    error_list(response)
    assert counts() == (0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("escaped", ["\\ud800", "abc\\udfffdef", "\\u0000"], ids=["high", "low", "NUL"])
def test_lone_surrogates_and_nul_escapes_in_text_are_refused(project, as_admin, existing, escaped):
    before = counts()

    response = post_raw(as_admin, project.id, '[{"text": "fine"}, {"text": "x' + escaped + 'y"}]')

    assert response.status_code == 400
    [error] = error_list(response)
    assert (error["index"], error["field"]) == (1, "text")
    assert counts() == before


@pytest.mark.django_db
def test_lone_surrogate_in_external_id_is_refused(project, as_admin, existing):
    before = counts()

    response = post_raw(as_admin, project.id, '[{"text": "fine", "external_id": "id-\\ud83d"}]')

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "external_id"
    assert counts() == before


@pytest.mark.django_db
def test_metadata_nested_too_deep_for_the_json_parser_is_a_400_not_a_crash(project, as_admin, existing):
    depth = 100_000
    body = '[{"text": "ok", "metadata": ' + '{"a": ' * depth + "1" + "}" * depth + "}]"
    before = counts()

    response = post_raw(as_admin, project.id, body)

    assert response.status_code == 400
    error_list(response)
    assert counts() == before


@pytest.mark.django_db
def test_metadata_at_the_depth_limit_is_accepted(project, as_admin):
    response = post_rows(as_admin, project.id, [{"text": "ok", "metadata": nested(19)}])

    assert response.status_code == 201
    assert Example.objects.get().metadata == nested(19)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("history", "field"),
    [
        ({"user": "rita", "kind": "label", "label": "positive", "note": "a\x00b"}, "annotations[0].note"),
        ({"user": "ri\x00ta", "kind": "label", "label": "positive"}, "annotations[0].user"),
        ({"user": "rita", "kind": "label", "label": "positive", "note": "\ud800"}, "annotations[0].note"),
    ],
    ids=["NUL in note", "NUL in user", "lone surrogate in note"],
)
def test_bad_characters_in_imported_history_are_refused_naming_the_row(
    project, as_admin, existing, history, field
):
    before = counts()
    row = {"text": "ok", "annotations": [history]}

    response = post_raw(as_admin, project.id, json.dumps([{"text": "fine", "label": "positive"}, row]))

    assert response.status_code == 400
    [error] = error_list(response)
    assert (error["index"], error["field"]) == (1, field)
    assert counts() == before


@pytest.mark.django_db
def test_a_lone_surrogate_in_metadata_is_refused(project, as_admin, existing):
    before = counts()

    response = post_raw(as_admin, project.id, '[{"text": "ok", "metadata": {"k": "\\udc00"}}]')

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "metadata"
    assert counts() == before

