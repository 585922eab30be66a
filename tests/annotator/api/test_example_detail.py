"""GET /api/v1/examples/{id}/: the example, its current label and its annotation history."""

from __future__ import annotations

import pytest

from annotator.models import QueueItem


def url(example_id: int) -> str:
    return f"/api/v1/examples/{example_id}/"


@pytest.fixture
def example(project, admin, make_examples):
    [example] = make_examples(
        project,
        admin,
        [{"external_id": "e1", "text": "So-so product", "label": "neutral", "metadata": {"shop": "north"}}],
    )
    return example


def queue_work(example, user, *, done: bool) -> QueueItem:
    """The annotator's own queue item for this example (leased, or done when ``done``)."""
    fields = (
        {"done_by": user, "status": QueueItem.Status.DONE}
        if done
        else {"leased_by": user, "status": QueueItem.Status.LEASED}
    )
    return QueueItem.objects.create(
        project=example.project, example=example, reason=QueueItem.Reason.UNCERTAIN, **fields
    )


@pytest.mark.django_db
def test_a_reviewer_sees_the_example_with_its_full_history(
    example, reviewer, annotator, annotate, as_reviewer
):
    queue_work(example, annotator, done=True)
    annotate(example, annotator, "negative")
    annotate(example, reviewer, "positive", kind="review", note="sarcasm")

    response = as_reviewer.get(url(example.id))

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["external_id"], body["text"], body["source"], body["metadata"]) == (
        example.id,
        "e1",
        "So-so product",
        "import",
        {"shop": "north"},
    )
    assert (body["label"], body["labels"], body["label_source"]) == ("positive", ["positive"], "review")
    assert body["latest_score"] is None
    assert [(a["user"], a["kind"], a["label"], a["labels"]) for a in body["annotations"]] == [
        ("alice", "import", "neutral", ["neutral"]),
        ("anna", "relabel", "negative", ["negative"]),
        ("rita", "review", "positive", ["positive"]),
    ]
    assert body["annotations"][-1]["note"] == "sarcasm"
    assert all(a["created_at"] and a["example_id"] == example.id for a in body["annotations"])


@pytest.mark.django_db
def test_an_annotator_sees_only_their_own_annotations(example, annotator, reviewer, annotate, as_annotator):
    queue_work(example, annotator, done=True)
    annotate(example, annotator, "negative", note="mine")
    annotate(example, reviewer, "positive")

    response = as_annotator.get(url(example.id))

    assert response.status_code == 200
    assert [(a["user"], a["label"], a["note"]) for a in response.json()["annotations"]] == [
        ("anna", "negative", "mine")
    ]


@pytest.mark.django_db
def test_an_annotator_sees_an_example_leased_to_them(example, annotator, as_annotator):
    queue_work(example, annotator, done=False)

    response = as_annotator.get(url(example.id))

    assert response.status_code == 200
    assert response.json()["annotations"] == []


@pytest.mark.django_db
def test_an_annotator_cannot_see_examples_outside_their_work(example, as_annotator):
    assert as_annotator.get(url(example.id)).status_code == 404


@pytest.mark.django_db
def test_an_annotator_loses_sight_of_an_example_leased_to_someone_else(example, reviewer, as_annotator):
    queue_work(example, reviewer, done=False)

    assert as_annotator.get(url(example.id)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["as_outsider", "as_admin"])
def test_hidden_and_missing_examples_are_both_404(example, caller, request):
    client = request.getfixturevalue(caller)
    target = example.id if caller == "as_outsider" else example.id + 999

    response = client.get(url(target))

    assert response.status_code == 404
    assert response.json()["errors"][0]["message"]


@pytest.mark.django_db
def test_multi_label_detail_lists_labels_and_has_no_single_label(
    multi_project, admin, as_admin, make_examples
):
    [example] = make_examples(
        multi_project, admin, [{"text": "match and dinner", "labels": ["food", "sports"]}]
    )

    body = as_admin.get(url(example.id)).json()

    assert body["label"] is None and body["labels"] == ["sports", "food"]
    assert body["annotations"][0]["label"] is None and body["annotations"][0]["labels"] == ["sports", "food"]
