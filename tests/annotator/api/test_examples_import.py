"""POST /api/v1/projects/{id}/examples/: bulk import, all or nothing, idempotent on external_id."""

from __future__ import annotations

import pytest

from annotator.models import Annotation, AnnotationKind, Example
from tests.annotator.api.examples_import import current_labels, nested, post_rows
from tests.annotator.assertions import counts, error_list


# --- what a good import does ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_import_creates_examples_and_records_labels_as_import_annotations(project, as_admin, admin):
    rows = [
        {
            "external_id": "r1",
            "text": "Great phone",
            "label": "positive",
            "source": "seed",
            "metadata": {"stars": 5},
        },
        {"external_id": "r2", "text": "Battery died"},
    ]

    response = post_rows(as_admin, project.id, rows)

    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 2 and body["unchanged"] == 0 and body["updated"] == 0
    first, second = (Example.objects.get(pk=pk) for pk in body["ids"])
    assert (first.external_id, first.text, first.source, first.metadata) == (
        "r1",
        "Great phone",
        "seed",
        {"stars": 5},
    )
    assert (second.external_id, second.source, second.metadata) == ("r2", "import", {})
    assert current_labels(first.id) == ["positive"] and first.label_source == AnnotationKind.IMPORT
    assert current_labels(second.id) == [] and second.label_source == ""
    annotation = Annotation.objects.get(example=first)
    assert (annotation.user, annotation.kind, annotation.labels) == (
        admin,
        AnnotationKind.IMPORT,
        ["positive"],
    )
    assert not Annotation.objects.filter(example=second).exists()


@pytest.mark.django_db
def test_import_into_a_multi_label_project_keeps_every_label(multi_project, as_admin):
    rows = [{"external_id": "t1", "text": "The chef ran a marathon", "labels": ["food", "sports"]}]

    response = post_rows(as_admin, multi_project.id, rows)

    assert response.status_code == 201
    assert current_labels(response.json()["ids"][0]) == ["sports", "food"]  # in the project's label order


@pytest.mark.django_db
def test_rows_without_external_id_get_one_from_their_text_so_a_repeated_text_stays_one_example(
    project, as_admin
):
    rows = [{"text": "same words"}, {"text": "other words"}, {"text": "same words"}]

    response = post_rows(as_admin, project.id, rows)

    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 3 and ids[0] == ids[2] and ids[0] != ids[1]
    assert Example.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_reimporting_the_same_rows_changes_nothing_and_answers_the_same_ids(project, as_admin):
    rows = [
        {"external_id": "r1", "text": "Great phone", "label": "positive"},
        {"external_id": "r2", "text": "Battery died", "label": "negative"},
        {"external_id": "r3", "text": "It is a phone"},
    ]
    first = post_rows(as_admin, project.id, rows).json()
    before = counts()

    again = post_rows(as_admin, project.id, rows)

    assert again.status_code == 201
    assert again.json() == {"created": 0, "unchanged": 3, "updated": 0, "ids": first["ids"]}
    assert counts() == before


@pytest.mark.django_db
def test_reimport_with_a_different_label_updates_the_example_with_a_new_import_annotation(
    project, as_admin, as_reviewer, reviewer
):
    first = post_rows(
        as_admin, project.id, [{"external_id": "r1", "text": "Fine I guess", "label": "positive"}]
    ).json()

    response = post_rows(
        as_reviewer, project.id, [{"external_id": "r1", "text": "Fine I guess", "label": "neutral"}]
    )

    assert response.status_code == 201
    assert response.json() == {"created": 0, "unchanged": 0, "updated": 1, "ids": first["ids"]}
    example_id = first["ids"][0]
    history = list(Annotation.objects.filter(example_id=example_id).order_by("id"))
    assert [(a.kind, a.labels) for a in history] == [("import", ["positive"]), ("import", ["neutral"])]
    assert history[-1].user == reviewer
    # Two users disagree once each: the most recent answer wins the tie.
    assert current_labels(example_id) == ["neutral"]


@pytest.mark.django_db
def test_same_external_id_with_another_text_is_refused_and_nothing_is_written(project, as_admin, existing):
    before = counts()

    response = post_rows(
        as_admin,
        project.id,
        [
            {"external_id": "new-1", "text": "a new one"},
            {"external_id": "old-1", "text": "a different text"},
        ],
    )

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["index"] == 1 and error["field"] == "external_id"
    assert "different text" in error["message"]
    assert counts() == before
    assert Example.objects.get(external_id="old-1").text == "already here"


@pytest.mark.django_db
def test_label_and_labels_that_agree_are_accepted_as_an_exported_row_carries_both(project, as_admin):
    rows = [
        {"external_id": "a", "text": "labeled", "label": "negative", "labels": ["negative"]},
        {"external_id": "b", "text": "unlabeled", "label": None, "labels": []},
    ]

    response = post_rows(as_admin, project.id, rows)

    assert response.status_code == 201
    labeled, unlabeled = response.json()["ids"]
    assert current_labels(labeled) == ["negative"] and current_labels(unlabeled) == []


@pytest.mark.django_db
def test_a_numeric_external_id_is_kept_as_text(project, as_admin):
    response = post_rows(as_admin, project.id, [{"external_id": 42, "text": "numbered"}])

    assert response.status_code == 201
    assert Example.objects.get().external_id == "42"
    assert (
        post_rows(as_admin, project.id, [{"external_id": "42", "text": "numbered"}]).json()["unchanged"] == 1
    )


@pytest.mark.django_db
def test_observed_at_is_stored_in_utc_and_production_rows_default_to_now(project, as_admin):
    response = post_rows(
        as_admin,
        project.id,
        [
            {"external_id": "t", "text": "timed", "observed_at": "2024-05-06T07:08:09"},
            {"external_id": "p", "text": "live", "source": "production"},
        ],
    )

    assert response.status_code == 201
    timed, live = (Example.objects.get(pk=pk) for pk in response.json()["ids"])
    assert timed.observed_at.isoformat() == "2024-05-06T07:08:09+00:00"
    assert live.observed_at is not None and live.source == "production"


# --- bad rows: 400 naming the row, nothing written ------------------------------------------------------
BAD_ROWS = {
    "empty text": ({"text": ""}, "text"),
    "whitespace text": ({"text": "  \n\t "}, "text"),
    "missing text": ({"external_id": "no-text"}, "text"),
    "text over the default limit": ({"text": "x" * 20_001}, "text"),
    "text as a list": ({"text": ["not", "a", "string"]}, "text"),
    "text as a number": ({"text": 42}, "text"),
    "unknown label": ({"text": "ok", "label": "furious"}, "label"),
    "several labels in a single-label project": (
        {"text": "ok", "labels": ["positive", "negative"]},
        "labels",
    ),
    "label given as a list": ({"text": "ok", "label": ["positive"]}, "label"),
    "empty labels list": ({"text": "ok", "labels": []}, "labels"),
    "label and labels that disagree": ({"text": "ok", "label": "positive", "labels": ["negative"]}, "labels"),
    "metadata as a string": ({"text": "ok", "metadata": "stars=5"}, "metadata"),
    "metadata as a list": ({"text": "ok", "metadata": [1, 2]}, "metadata"),
    "deeply nested metadata": ({"text": "ok", "metadata": nested(30)}, "metadata"),
    "NUL in text": ({"text": "bad\x00byte"}, "text"),
    "NUL in metadata": ({"text": "ok", "metadata": {"k": "a\x00b"}}, "metadata"),
    "empty external_id": ({"text": "ok", "external_id": "  "}, "external_id"),
    "external_id too long": ({"text": "ok", "external_id": "e" * 256}, "external_id"),
    "source with spaces": ({"text": "ok", "source": "my source"}, "source"),
    "observed_at not a date": ({"text": "ok", "observed_at": "yesterday"}, "observed_at"),
    "unknown field": ({"text": "ok", "colour": "red"}, "colour"),
    "history from a reviewer": (
        {"text": "ok", "annotations": [{"user": "rita", "kind": "label", "label": "positive"}]},
        "annotations",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("bad_row", "field"), list(BAD_ROWS.values()), ids=list(BAD_ROWS))
def test_a_bad_row_is_refused_with_its_index_and_field_and_nothing_is_written(
    project, as_reviewer, existing, bad_row, field
):
    rows = [
        {"external_id": "good-1", "text": "a fine row", "label": "positive"},
        bad_row,
        {"external_id": "good-2", "text": "another fine row"},
    ]
    before = counts()

    response = post_rows(as_reviewer, project.id, rows)

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["index"] == 1
    assert error["field"] == field
    assert counts() == before


@pytest.mark.django_db
def test_a_row_that_is_not_an_object_is_refused_with_its_index(project, as_admin, existing):
    before = counts()

    response = post_rows(as_admin, project.id, [{"text": "fine"}, "just a string"])

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["index"] == 1 and "object" in error["message"]
    assert counts() == before


@pytest.mark.django_db
def test_every_bad_row_is_reported_not_just_the_first(project, as_admin, existing):
    before = counts()

    response = post_rows(
        as_admin, project.id, [{"text": ""}, {"text": "fine"}, {"text": "ok", "label": "nope"}]
    )

    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in error_list(response)] == [(0, "text"), (2, "label")]
    assert counts() == before


@pytest.mark.django_db
def test_duplicate_external_id_in_one_request_names_the_later_row(project, as_admin, existing):
    before = counts()

    response = post_rows(
        as_admin,
        project.id,
        [
            {"external_id": "dup", "text": "first"},
            {"external_id": "other", "text": "second"},
            {"external_id": "dup", "text": "third"},
        ],
    )

    assert response.status_code == 400
    [error] = error_list(response)
    assert (error["index"], error["field"]) == (2, "external_id")
    assert "row 0" in error["message"]
    assert counts() == before


@pytest.mark.django_db
def test_duplicate_external_id_is_refused_even_when_the_text_is_the_same(project, as_admin):
    response = post_rows(
        as_admin, project.id, [{"external_id": "dup", "text": "same"}, {"external_id": "dup", "text": "same"}]
    )

    assert response.status_code == 400
    assert error_list(response)[0]["index"] == 1
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_text_exactly_at_the_default_limit_is_accepted(project, as_admin):
    response = post_rows(as_admin, project.id, [{"text": "y" * 20_000}])

    assert response.status_code == 201
    assert len(Example.objects.get(pk=response.json()["ids"][0]).text) == 20_000


@pytest.mark.django_db
def test_a_project_with_a_smaller_text_limit_refuses_longer_texts(make_project, admin, api_client):
    small = make_project(admin, name="Tweets", settings={"max_text_chars": 10})
    client = api_client(admin)

    refused = post_rows(client, small.id, [{"text": "0123456789"}, {"text": "0123456789X"}])
    accepted = post_rows(client, small.id, [{"text": "0123456789"}])

    assert refused.status_code == 400
    [error] = error_list(refused)
    assert (error["index"], error["field"]) == (1, "text")
    assert "10" in error["message"]
    assert accepted.status_code == 201

