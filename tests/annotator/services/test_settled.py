"""Settled labels: people re-checked the current label, so the detector's flag on it is answered.

A re-check (the answer to a ``suspect`` queue item), a review decision, or with overlap the agreement of the
configured number of people settles an example; a later disagreeing answer, or a change of the current
label, re-opens it.
"""

from __future__ import annotations

import pytest

from annotator.models import AnnotationKind, Example, QueueItem
from annotator.services.annotations import Vote, settlement_from
from annotator.services.noise import noise_decisions_apply
from annotator.services.projects import project_update_settings
from annotator.services.queue import queue_add, queue_lease, queue_submit

pytestmark = pytest.mark.django_db


def _vote(annotation_id: int, user_id: int, label: str, kind: str = "label", recheck: bool = False) -> Vote:
    return Vote(annotation_id, user_id, kind, (label,), recheck=recheck)


# --- the rule, as a pure function --------------------------------------------------------------------------
def test_a_first_label_alone_is_not_settled():
    assert settlement_from([_vote(1, 1, "a", "import")], ("a",), agreeing_people=1) == 0


def test_a_recheck_that_gives_the_current_label_settles_it():
    votes = [_vote(1, 1, "a", "import"), _vote(2, 2, "a", "relabel", recheck=True)]
    assert settlement_from(votes, ("a",), agreeing_people=1) == 2  # confirmed by two people


def test_a_recheck_that_changes_the_label_settles_the_new_label():
    votes = [_vote(1, 1, "a", "import"), _vote(2, 2, "b", "relabel", recheck=True)]
    assert settlement_from(votes, ("b",), agreeing_people=1) == 1


def test_a_review_decision_settles():
    votes = [_vote(1, 1, "a", "import"), _vote(2, 3, "a", AnnotationKind.REVIEW)]
    assert settlement_from(votes, ("a",), agreeing_people=1) == 2


def test_a_later_disagreeing_answer_reopens():
    votes = [_vote(1, 1, "a", "import"), _vote(2, 2, "a", "relabel", recheck=True), _vote(3, 3, "b", "relabel")]
    assert settlement_from(votes, ("a",), agreeing_people=1) == 0


def test_a_settling_answer_for_another_label_does_not_settle_the_current_one():
    # the current label changed after the re-check (a reviewer decided otherwise, say): new evidence
    votes = [_vote(1, 1, "a", "import"), _vote(2, 2, "a", "relabel", recheck=True)]
    assert settlement_from(votes, ("b",), agreeing_people=1) == 0


def test_with_overlap_agreement_of_the_configured_number_of_people_settles():
    two_agree = [_vote(1, 1, "a"), _vote(2, 2, "a")]
    assert settlement_from(two_agree, ("a",), agreeing_people=2) == 2
    assert settlement_from(two_agree, ("a",), agreeing_people=3) == 0
    # without overlap, two ordinary answers are not a re-check
    assert settlement_from(two_agree, ("a",), agreeing_people=1) == 0


# --- through the services --------------------------------------------------------------------------------
def _suspect_item(project, example):
    queue_add(project=project, examples=[example], reason=QueueItem.Reason.SUSPECT, priority=1.0)
    return QueueItem.objects.get(example=example, status=QueueItem.Status.PENDING)


def test_answering_a_suspect_item_settles_and_records_the_outcome(project, admin, annotator, make_examples):
    # Given an imported label the detector doubts, queued as suspect
    [example] = make_examples(project, admin, [{"text": "great film", "label": "positive"}])
    _suspect_item(project, example)
    [leased] = queue_lease(project=project, user=annotator, n=1)

    # When the annotator confirms the label
    queue_submit(user=annotator, item_id=leased.id, data={"label": "positive"})

    # Then the example is settled, confirmed by two people, and the item's outcome is "confirmed"
    example.refresh_from_db()
    assert example.settled and example.confirmations == 2
    assert QueueItem.objects.get(pk=leased.id).outcome == "confirmed"


def test_a_suspect_answer_that_changes_the_label_counts_as_a_confirmed_error(project, admin, annotator,
                                                                                 make_examples):
    [example] = make_examples(project, admin, [{"text": "awful film", "label": "positive"}])
    _suspect_item(project, example)
    [leased] = queue_lease(project=project, user=annotator, n=1)
    queue_submit(user=annotator, item_id=leased.id, data={"label": "negative"})
    example.refresh_from_db()
    assert QueueItem.objects.get(pk=leased.id).outcome == "changed"
    assert example.settled and example.labels.get().name == "negative"


def test_a_new_disagreeing_answer_reopens_a_settled_example(project, admin, reviewer, annotator, make_examples,
                                                           annotate):
    [example] = make_examples(project, admin, [{"text": "fine film", "label": "positive"}])
    _suspect_item(project, example)
    [leased] = queue_lease(project=project, user=annotator, n=1)
    queue_submit(user=annotator, item_id=leased.id, data={"label": "positive"})
    assert Example.objects.get(pk=example.pk).settled

    annotate(example, reviewer, "negative", kind="relabel")

    example.refresh_from_db()
    assert not example.settled and example.confirmations == 0


def test_a_review_decision_settles_through_the_noise_report(project, admin, reviewer, make_examples):
    [kept, relabeled] = make_examples(project, admin, [{"text": "ok", "label": "positive"},
                                                       {"text": "bad", "label": "positive"}])
    noise_decisions_apply(project=project, user=reviewer, rows=[
        {"example_id": kept.id, "action": "keep"},
        {"example_id": relabeled.id, "action": "relabel", "label": "negative"},
    ])
    assert Example.objects.get(pk=kept.pk).settled
    assert Example.objects.get(pk=relabeled.pk).settled


def test_with_overlap_agreeing_annotators_settle(project, admin, reviewer, annotator, make_examples, annotate):
    project_update_settings(project=project, settings={"overlap": 2})
    [example] = make_examples(project, admin, [{"text": "a film", "source": "pool"}])
    annotate(example, annotator, "positive")
    assert not Example.objects.get(pk=example.pk).settled
    annotate(example, reviewer, "positive", kind="label")
    example.refresh_from_db()
    assert example.settled and example.confirmations == 2


def test_the_noise_report_api_lists_settled_flags_apart(project, admin, annotator, make_examples, as_reviewer):
    # Given two flagged labels, one of which an annotator re-checked
    from annotator.models import ExampleScore, ModelVersion

    examples = make_examples(project, admin, [{"text": "meh", "label": "positive"},
                                              {"text": "eh", "label": "positive"}])
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY,
                                          metrics={"noise": {"estimated_noise_rate": 0.5}})
    for example in examples:
        ExampleScore.objects.create(example=example, model_version=version, probs=[0.2, 0.8, 0.0],
                                    predicted=["negative"], confidence=0.8, entropy=0.5, margin=0.6,
                                    label_quality=0.2, is_issue=True, suggested_label="negative")
    _suspect_item(project, examples[0])
    [leased] = queue_lease(project=project, user=annotator, n=1)
    queue_submit(user=annotator, item_id=leased.id, data={"label": "positive"})

    # When the reviewer reads the report, and then its settled flags
    report = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/").json()
    settled = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/", {"settled": "true"}).json()

    # Then the open issues leave the settled one out, the header counts it, and the settled page lists it
    assert [row["example_id"] for row in report["issues"]["results"]] == [examples[1].id]
    assert report["settled"] == 1
    assert [(row["example_id"], row["confirmations"]) for row in settled["issues"]["results"]] == [
        (examples[0].id, 2)]
    assert report["detector"]["reviewed"] == 1 and report["detector"]["confirmed_errors"] == 0
    bad = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/", {"settled": "maybe"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "settled"
