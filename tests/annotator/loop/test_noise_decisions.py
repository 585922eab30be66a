"""Reviewer decisions on the noise report: keep, relabel, send to the queue; all or nothing.

The report's rows (a ready version with cleanlab scores) are made directly: what is under test is what the
decisions do to labels, the queue and the report, not training (test_train_e2e covers the report's origin).
"""

from __future__ import annotations

import pytest

from annotator.models import Annotation, ExampleScore, ModelVersion, QueueItem
from tests.annotator.assertions import counts, error_list


@pytest.fixture
def suspects(project, admin, make_examples) -> list:
    """Three labeled examples the latest version flags as label issues, worst first."""
    examples = make_examples(project, admin, [
        {"external_id": "s0", "text": "Refund denied, worst service ever", "label": "positive"},
        {"external_id": "s1", "text": "Absolutely loved the staff", "label": "negative"},
        {"external_id": "s2", "text": "It arrived on a Tuesday", "label": "positive"},
    ])
    version = ModelVersion.objects.create(
        project=project, number=1, status=ModelVersion.Status.READY,
        metrics={"noise": {"estimated_noise_rate": 0.5, "per_class": [], "n": 3}},
    )
    for quality, example, suggested in zip([0.05, 0.1, 0.2], examples, ["negative", "positive", "neutral"],
                                           strict=True):
        ExampleScore.objects.create(example=example, model_version=version, probs=[0.1, 0.8, 0.1],
                                    predicted=[suggested], confidence=0.8, entropy=0.5, margin=0.7,
                                    label_quality=quality, is_issue=True, suggested_label=suggested)
    return examples


def report_ids(client, project_id: int) -> list[int]:
    response = client.get(f"/api/v1/projects/{project_id}/noise-report/")
    assert response.status_code == 200, response.content
    return [issue["example_id"] for issue in response.json()["issues"]["results"]]


def label_of(client, example_id: int) -> tuple[str, str]:
    body = client.get(f"/api/v1/examples/{example_id}/").json()
    return body["label"], body["label_source"]


@pytest.mark.django_db
def test_keep_relabel_and_send_to_queue_each_do_what_the_reviewer_decided(project, suspects, as_reviewer):
    wrong, also_wrong, fine = suspects
    assert report_ids(as_reviewer, project.id) == [wrong.id, also_wrong.id, fine.id]

    response = as_reviewer.post(f"/api/v1/projects/{project.id}/noise-report/decisions/", [
        {"example_id": wrong.id, "action": "relabel", "label": "negative"},
        {"example_id": fine.id, "action": "keep"},
        {"example_id": also_wrong.id, "action": "send_to_queue"},
    ], format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"applied": 3, "kept": 1, "relabeled": 1, "sent_to_queue": 1, "queue_items_created": 1}
    # relabel: a review annotation by the reviewer, and the current label changes
    review = Annotation.objects.filter(example=wrong).latest("id")
    assert (review.kind, review.user.username, review.labels) == ("review", "rita", ["negative"])
    assert label_of(as_reviewer, wrong.id) == ("negative", "review")
    # keep: a review annotation confirming the label, which stays
    kept = Annotation.objects.filter(example=fine).latest("id")
    assert (kept.kind, kept.labels) == ("review", ["positive"])
    assert label_of(as_reviewer, fine.id) == ("positive", "review")
    # send to queue: a pending suspect item, the label untouched until someone answers it
    [item] = QueueItem.objects.filter(example=also_wrong)
    assert (item.reason, item.status) == ("suspect", "pending")
    assert label_of(as_reviewer, also_wrong.id) == ("negative", "import")
    assert not Annotation.objects.filter(example=also_wrong, kind="review").exists()
    # settled examples leave the report; the queued one stays until it is answered
    assert report_ids(as_reviewer, project.id) == [also_wrong.id]


@pytest.mark.django_db
def test_one_bad_decision_writes_nothing(project, suspects, as_reviewer):
    wrong, also_wrong, _ = suspects
    before = counts(), QueueItem.objects.count()

    response = as_reviewer.post(f"/api/v1/projects/{project.id}/noise-report/decisions/", [
        {"example_id": wrong.id, "action": "relabel", "label": "negative"},
        {"example_id": also_wrong.id, "action": "relabel", "label": "no-such-label"},
    ], format="json")

    assert response.status_code == 400
    assert [error["index"] for error in error_list(response)] == [1]
    assert (counts(), QueueItem.objects.count()) == before
    assert label_of(as_reviewer, wrong.id) == ("positive", "import")
