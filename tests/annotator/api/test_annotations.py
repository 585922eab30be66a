"""POST /api/v1/examples/{id}/annotations/: reviewers and admins label directly; annotators use the queue."""

from __future__ import annotations

import pytest

from annotator.models import Annotation, QueueItem
from tests.annotator.assertions import counts, error_list


def url(example_id: int) -> str:
    return f"/api/v1/examples/{example_id}/annotations/"


def current(client, example_id: int) -> tuple[str | None, list[str], str | None]:
    body = client.get(f"/api/v1/examples/{example_id}/").json()
    return body["label"], body["labels"], body["label_source"]


@pytest.fixture
def unlabeled(project, admin, make_examples):
    return make_examples(project, admin, [{"external_id": "u", "text": "Needs a label"}])[0]


@pytest.fixture
def labeled(project, admin, make_examples):
    return make_examples(
        project, admin, [{"external_id": "l", "text": "Already labeled", "label": "positive"}]
    )[0]


@pytest.mark.django_db
def test_labeling_an_unlabeled_example_records_a_label_by_the_caller(unlabeled, as_reviewer):
    response = as_reviewer.post(url(unlabeled.id), {"label": "negative", "note": "complaint"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["user"], body["kind"], body["label"], body["labels"], body["note"]) == (
        "rita",
        "label",
        "negative",
        ["negative"],
        "complaint",
    )
    assert body["example_id"] == unlabeled.id and body["id"] and body["created_at"]
    assert current(as_reviewer, unlabeled.id) == ("negative", ["negative"], "label")


@pytest.mark.django_db
def test_a_second_opinion_on_a_labeled_example_is_a_relabel(labeled, as_reviewer):
    response = as_reviewer.post(url(labeled.id), {"label": "neutral"}, format="json")

    assert response.status_code == 201
    assert response.json()["kind"] == "relabel"
    # alice's import said positive, rita says neutral: one vote each, the most recent wins.
    assert current(as_reviewer, labeled.id) == ("neutral", ["neutral"], "relabel")


@pytest.mark.django_db
def test_a_review_decision_overrides_the_majority(labeled, make_user, project, annotate, as_admin):
    for name in ("v1", "v2"):
        annotate(labeled, make_user(name), "positive")

    response = as_admin.post(url(labeled.id), {"label": "negative", "kind": "review"}, format="json")

    assert response.status_code == 201 and response.json()["kind"] == "review"
    assert current(as_admin, labeled.id) == ("negative", ["negative"], "review")


@pytest.mark.django_db
def test_annotations_are_appended_never_replaced(labeled, as_reviewer):
    for label in ("neutral", "negative", "neutral"):
        as_reviewer.post(url(labeled.id), {"label": label}, format="json")

    history = list(Annotation.objects.filter(example=labeled).order_by("id").values_list("labels", flat=True))

    assert history == [["positive"], ["neutral"], ["negative"], ["neutral"]]


@pytest.mark.django_db
def test_multi_label_annotations_take_a_list(multi_project, admin, as_reviewer, make_examples):
    [example] = make_examples(multi_project, admin, [{"text": "runner eats pasta"}])

    response = as_reviewer.post(url(example.id), {"labels": ["food", "sports", "food"]}, format="json")

    assert response.status_code == 201
    assert response.json()["labels"] == ["sports", "food"] and response.json()["label"] is None
    assert current(as_reviewer, example.id) == (None, ["sports", "food"], "label")


@pytest.mark.django_db
def test_a_single_label_project_accepts_a_one_element_labels_list(unlabeled, as_reviewer):
    response = as_reviewer.post(url(unlabeled.id), {"labels": ["neutral"]}, format="json")

    assert response.status_code == 201
    assert response.json()["label"] == "neutral"


BAD_ANNOTATIONS = {
    "unknown label": ({"label": "furious"}, "label"),
    "several labels in a single-label project": ({"labels": ["positive", "negative"]}, "labels"),
    "label and labels": ({"label": "positive", "labels": ["positive"]}, "labels"),
    "no label": ({"note": "forgot"}, "label"),
    "label as a list": ({"label": ["positive"]}, "label"),
    "labels as a string": ({"labels": "positive"}, "labels"),
    "empty labels": ({"labels": []}, "labels"),
    "label as a number": ({"label": 1}, "label"),
    "note too long": ({"label": "positive", "note": "n" * 5001}, "note"),
    "note not a string": ({"label": "positive", "note": ["x"]}, "note"),
    "kind import": ({"label": "positive", "kind": "import"}, "kind"),
    "unknown kind": ({"label": "positive", "kind": "vote"}, "kind"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), list(BAD_ANNOTATIONS.values()), ids=list(BAD_ANNOTATIONS))
def test_a_bad_annotation_is_refused_and_nothing_is_written(labeled, as_reviewer, body, field):
    before = counts()

    response = as_reviewer.post(url(labeled.id), body, format="json")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == field
    assert counts() == before
    assert current(as_reviewer, labeled.id) == ("positive", ["positive"], "import")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", ['"positive"', "[1]", '{"label": "positive"'], ids=["string", "list", "malformed"]
)
def test_an_annotation_body_that_is_not_a_json_object_is_refused(labeled, as_reviewer, body):
    before = counts()

    response = as_reviewer.generic("POST", url(labeled.id), body, content_type="application/json")

    assert response.status_code == 400
    error_list(response)
    assert counts() == before


@pytest.mark.django_db
def test_a_nul_character_in_the_note_is_a_400_not_a_crash(labeled, as_reviewer):
    before = counts()

    response = as_reviewer.post(url(labeled.id), {"label": "negative", "note": "a\x00b"}, format="json")

    assert response.status_code == 400
    assert counts() == before
    assert current(as_reviewer, labeled.id) == ("positive", ["positive"], "import")


@pytest.mark.django_db
def test_an_annotator_cannot_annotate_directly_even_an_example_of_their_own_queue(
    labeled, annotator, as_annotator
):
    QueueItem.objects.create(
        project=labeled.project,
        example=labeled,
        reason=QueueItem.Reason.RANDOM,
        leased_by=annotator,
        status=QueueItem.Status.LEASED,
    )
    before = counts()

    response = as_annotator.post(url(labeled.id), {"label": "negative"}, format="json")

    assert response.status_code == 403
    assert "queue" in error_list(response)[0]["message"]
    assert counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["as_annotator", "as_outsider"])
def test_examples_the_caller_cannot_see_are_404(labeled, caller, request):
    before = counts()

    response = request.getfixturevalue(caller).post(url(labeled.id), {"label": "negative"}, format="json")

    assert response.status_code == 404
    assert counts() == before


@pytest.mark.django_db
def test_annotating_a_missing_example_is_404(as_admin, project):
    assert as_admin.post(url(123456), {"label": "negative"}, format="json").status_code == 404
