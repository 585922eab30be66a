"""CROWDLAB consensus at training time, the current-label rule that takes it, annotator quality, and the
ActiveLab ranking of another label against a first label (annotator.services.consensus)."""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
import pytest
from django.urls import reverse

from annotator.models import Example, Membership, ModelVersion, Role
from annotator.services.annotations import refresh_current_labels
from annotator.services.consensus import activelab_candidates, consensus_update
from annotator.services.projects import member_set, project_update_settings

pytestmark = pytest.mark.django_db

LABELS = ["positive", "negative", "neutral"]


def stored(example: Example) -> tuple[list[str], str]:
    example.refresh_from_db()
    return list(example.labels.order_by("position").values_list("name", flat=True)), example.label_source


@pytest.fixture
def crowd(project, make_user) -> dict[str, Any]:
    """Two careful annotators (right every time) and two careless ones (right 30% of the time), on a project
    that asks several people per item (overlap 2)."""
    project_update_settings(project=project, settings={"overlap": 2})
    people = {name: make_user(name) for name in ("gail", "gus", "bart", "bea")}
    for user in people.values():
        member_set(project=project, username=user.username, role=Role.ANNOTATOR)
    return people


def answered_history(project, admin, crowd, make_examples, annotate, *, n: int = 30) -> tuple[list[Example], list[str]]:
    """n items all four answered; the careless ones mostly wrong."""
    rng = random.Random(7)
    examples = make_examples(project, admin, [{"text": f"history {i}", "external_id": f"h{i}"} for i in range(n)])
    truth = [LABELS[i % 3] for i in range(n)]
    for i, example in enumerate(examples):
        annotate(example, crowd["gail"], truth[i])
        annotate(example, crowd["gus"], truth[i])
        for careless in ("bart", "bea"):
            wrong = LABELS[(i + 1 + rng.randrange(2)) % 3]
            annotate(example, crowd[careless], truth[i] if rng.random() < 0.3 else wrong)
    return examples, truth


def model_probs(truth: list[str | None]) -> np.ndarray:
    """The model leans to the true label (0.6); None: it has no idea (uniform)."""
    probs = np.full((len(truth), 3), 0.2)
    for i, label in enumerate(truth):
        if label is None:
            probs[i] = 1 / 3
        else:
            probs[i, LABELS.index(label)] = 0.6
    return probs


def train(project, examples: list[Example], truth: list[str | None], **extra: Any) -> dict[str, Any]:
    """What the train job does: consensus over the snapshot's labeled examples and their probabilities."""
    return consensus_update(project=project, example_ids=[e.id for e in examples], probs=model_probs(truth),
                            names=LABELS, **extra)


# --- consensus -----------------------------------------------------------------------------------------------
def test_consensus_sides_with_the_careful_annotator_against_a_careless_majority(
    project, admin, crowd, make_examples, annotate
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)
    [target] = make_examples(project, admin, [{"text": "disputed", "external_id": "t"}])
    annotate(target, crowd["gail"], "positive")
    annotate(target, crowd["bart"], "negative")
    annotate(target, crowd["bea"], "negative")
    assert stored(target)[0] == ["negative"]  # the majority rule: two against one

    summary = train(project, [*history, target], [*truth, None])  # the model cannot tell

    assert stored(target)[0] == ["positive"]
    target.refresh_from_db()
    assert target.consensus["labels"] == ["positive"]
    assert target.consensus["through_annotation"] == target.annotations.order_by("-id").first().id
    assert 0 <= target.consensus["quality"] <= 1
    assert summary["method"] == "crowdlab"
    assert summary["n_items"] == 31 and summary["n_annotators"] == 4
    assert summary["n_overrides_majority"] >= 1
    assert 0 < summary["agreement_rate"] < 1


def test_consensus_breaks_a_tie_for_the_careful_annotator_not_the_latest_answer(
    project, admin, crowd, make_examples, annotate
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)
    [target] = make_examples(project, admin, [{"text": "tie", "external_id": "t"}])
    annotate(target, crowd["gus"], "neutral")
    annotate(target, crowd["bea"], "positive")
    assert stored(target)[0] == ["positive"]  # a tie: the most recent answer

    train(project, [*history, target], [*truth, None])

    assert stored(target) == (["neutral"], "label")


def test_an_answer_newer_than_the_consensus_hands_the_item_back_to_the_majority_rule(
    project, admin, crowd, make_examples, annotate
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)
    [target] = make_examples(project, admin, [{"text": "tie", "external_id": "t"}])
    annotate(target, crowd["gus"], "neutral")
    annotate(target, crowd["bea"], "positive")
    train(project, [*history, target], [*truth, None])
    assert stored(target)[0] == ["neutral"]

    annotate(target, crowd["bart"], "positive")

    assert stored(target)[0] == ["positive"]  # two against one, as before consensus
    target.refresh_from_db()
    assert target.consensus is not None  # kept until the next training re-weighs the item


def test_a_review_decision_still_wins_over_the_consensus(project, admin, reviewer, crowd, make_examples, annotate):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)
    [target] = make_examples(project, admin, [{"text": "tie", "external_id": "t"}])
    annotate(target, crowd["gus"], "neutral")
    annotate(target, crowd["bea"], "positive")
    annotate(target, reviewer, "negative", kind="review")
    train(project, [*history, target], [*truth, None])

    assert stored(target) == (["negative"], "review")


def test_answers_after_the_snapshot_are_left_out_and_a_stale_consensus_is_cleared(
    project, admin, crowd, make_examples, annotate
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)
    [target] = make_examples(project, admin, [{"text": "late", "external_id": "t"}])
    annotate(target, crowd["gus"], "neutral")
    snapshot_max = target.annotations.order_by("-id").first().id
    annotate(target, crowd["bea"], "positive")  # after the snapshot
    Example.objects.filter(pk=target.pk).update(
        consensus={"labels": ["neutral"], "quality": 0.9, "through_annotation": snapshot_max + 1})
    refresh_current_labels([target.id], project=project)
    assert stored(target)[0] == ["neutral"]  # the stale consensus rules for now

    train(project, [*history, target], [*truth, None], max_annotation_id=snapshot_max)

    target.refresh_from_db()
    assert target.consensus is None  # one answer at snapshot time: no consensus
    assert stored(target)[0] == ["positive"]  # the majority rule again (a tie: the latest answer)


def test_annotator_quality_is_stored_per_member_and_listed_by_the_members_api(
    project, admin, crowd, make_examples, annotate, as_reviewer
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate)

    summary = train(project, history, truth)

    quality = dict(Membership.objects.filter(project=project).values_list("user__username", "annotator_quality"))
    assert min(quality["gail"], quality["gus"]) > max(quality["bart"], quality["bea"])
    assert quality["alice"] is None and quality["anna"] is None  # answered nothing several people answered
    assert summary["annotators"]["gail"]["annotator_quality"] == quality["gail"]

    members = {row["username"]: row for row in as_reviewer.get(f"/api/v1/projects/{project.id}/members/").json()}
    assert members["gail"]["annotator_quality"] == pytest.approx(quality["gail"])
    assert members["bart"]["annotator_quality"] < members["gail"]["annotator_quality"]
    assert 0 <= members["bea"]["agreement_with_consensus"] <= 1
    assert members["anna"] == {"username": "anna", "role": "annotator", "annotator_quality": None,
                               "agreement_with_consensus": None}


def test_the_agreement_page_shows_crowdlab_quality_next_to_the_agreement(
    project, admin, reviewer, crowd, make_examples, annotate, client
):
    history, truth = answered_history(project, admin, crowd, make_examples, annotate, n=12)
    [target] = make_examples(project, admin, [{"text": "tie on the page", "external_id": "t"}])
    annotate(target, crowd["gus"], "neutral")
    annotate(target, crowd["bea"], "positive")
    client.force_login(reviewer)
    before = client.get(reverse("agreement", args=[project.id])).content.decode()
    assert "Quality (CROWDLAB)" in before and "appears after the next training" in before

    train(project, [*history, target], [*truth, None])
    html = client.get(reverse("agreement", args=[project.id])).content.decode()

    gail = Membership.objects.get(project=project, user=crowd["gail"]).annotator_quality
    row = rf'<td>gail</td><td class="num">12</td><td class="num">[\d.]+</td><td class="num">{gail:.2f}</td>'
    assert re.search(row, html)
    assert "appears after the next training" not in html
    assert "CROWDLAB 0." in html  # the tie item's label comes from the consensus, with its quality


def test_single_answer_items_and_single_annotator_projects_keep_todays_rule(project, admin, make_examples, annotate,
                                                                            make_user):
    # given items each answered by one person (imports and relabels by the same people)
    bob = make_user("bob")
    examples = make_examples(project, admin, [{"text": f"one {i}", "label": LABELS[i % 3]} for i in range(9)])
    for example in examples[:3]:
        annotate(example, admin, "neutral")  # the importer changes their mind: still one person
    before = {e.id: stored(e) for e in examples}

    project_update_settings(project=project, settings={"overlap": 2})
    summary = train(project, examples, [None] * len(examples))

    assert summary["method"] == "none" and summary["n_items"] == 0
    assert {e.id: stored(e) for e in examples} == before
    assert not Example.objects.filter(project=project, consensus__isnull=False).exists()
    assert not Membership.objects.filter(project=project, annotator_quality__isnull=False).exists()
    annotate(examples[4], bob, "positive")  # a second person now: the majority rule, as today
    assert stored(examples[4])[0] == ["positive"]


def test_a_multi_label_project_is_left_alone(multi_project, admin, reviewer, make_examples, annotate):
    [example] = make_examples(multi_project, admin, [{"text": "x", "labels": ["tech"]}])
    annotate(example, reviewer, "food")

    summary = consensus_update(project=multi_project, example_ids=[example.id], probs=np.full((1, 3), 0.5),
                               names=["sports", "food", "tech"])

    assert summary["method"] == "skipped" and "multi-label" in summary["note"]
    example.refresh_from_db()
    assert example.consensus is None


def test_probabilities_must_match_the_examples(project, admin, make_examples):
    project_update_settings(project=project, settings={"overlap": 2})
    examples = make_examples(project, admin, [{"text": "a", "label": "positive"}])
    with pytest.raises(ValueError, match="shape"):
        consensus_update(project=project, example_ids=[e.id for e in examples], probs=np.zeros((2, 3)),
                         names=LABELS)


# --- ActiveLab: another label or a first label ---------------------------------------------------------------
@pytest.fixture
def version(project) -> ModelVersion:
    # Three people per item: two agreeing answers do not settle an item yet, so it may get another label.
    project_update_settings(project=project, settings={"overlap": 3})
    return ModelVersion.objects.create(project=project, number=3, status=ModelVersion.Status.READY)


def agreeing_pairs(project, admin, crowd, make_examples, annotate, n: int = 24) -> dict[int, np.ndarray]:
    """n items gail and gus answered alike, the model confident in the same class."""
    examples = make_examples(project, admin, [{"text": f"agreed {i}", "external_id": f"a{i}"} for i in range(n)])
    probs = {}
    for i, example in enumerate(examples):
        annotate(example, crowd["gail"], LABELS[i % 3])
        annotate(example, crowd["gus"], LABELS[i % 3])
        row = np.full(3, 0.05)
        row[i % 3] = 0.9
        probs[example.id] = row
    return probs


def unlabeled(project, admin, make_examples, rows: list[list[float]]) -> tuple[list[int], np.ndarray]:
    examples = make_examples(project, admin, [{"text": f"pool {i}", "external_id": f"p{i}"} for i in range(len(rows))])
    return [e.id for e in examples], np.array(rows)


def test_a_disputed_labeled_item_comes_before_a_first_label_the_model_is_sure_of(
    project, admin, crowd, make_examples, annotate, version
):
    labeled = agreeing_pairs(project, admin, crowd, make_examples, annotate)
    [disputed] = make_examples(project, admin, [{"text": "disputed", "external_id": "d"}])
    annotate(disputed, crowd["gail"], "positive")
    annotate(disputed, crowd["gus"], "negative")
    labeled[disputed.id] = np.array([0.45, 0.45, 0.10])
    pool_ids, pool_probs = unlabeled(project, admin, make_examples, [[0.98, 0.01, 0.01]])

    ranked = activelab_candidates(project=project, version=version, labeled_probs=labeled,
                                  unlabeled_ids=pool_ids, unlabeled_probs=pool_probs, n=len(labeled) + 1)

    order = [example_id for example_id, _, _ in ranked]
    assert order[0] == disputed.id
    assert order.index(disputed.id) < order.index(pool_ids[0])
    priorities = [priority for _, priority, _ in ranked]
    assert priorities == sorted(priorities, reverse=True)
    explanation = dict((example_id, text) for example_id, _, text in ranked)
    assert explanation[disputed.id].startswith("another label: ActiveLab")
    assert "positive ×1, negative ×1" in explanation[disputed.id] and "v3" in explanation[disputed.id]
    assert explanation[pool_ids[0]].startswith("a first label: ActiveLab")


def test_a_first_label_the_model_is_unsure_of_comes_before_labels_everyone_agrees_on(
    project, admin, crowd, make_examples, annotate, version
):
    labeled = agreeing_pairs(project, admin, crowd, make_examples, annotate)
    pool_ids, pool_probs = unlabeled(project, admin, make_examples, [[0.34, 0.33, 0.33], [0.9, 0.05, 0.05]])

    ranked = activelab_candidates(project=project, version=version, labeled_probs=labeled,
                                  unlabeled_ids=pool_ids, unlabeled_probs=pool_probs, n=3)

    assert ranked[0][0] == pool_ids[0]
    assert len(ranked) == 3
    assert all(0 <= priority <= 1 for _, priority, _ in ranked)


def test_settled_examples_are_not_offered_for_another_label(
    project, admin, reviewer, crowd, make_examples, annotate, version
):
    labeled = agreeing_pairs(project, admin, crowd, make_examples, annotate, n=12)
    [disputed] = make_examples(project, admin, [{"text": "disputed", "external_id": "d"}])
    annotate(disputed, crowd["gail"], "positive")
    annotate(disputed, crowd["gus"], "negative")
    annotate(disputed, reviewer, "positive", kind="review")  # a review decision settles it
    labeled[disputed.id] = np.array([0.45, 0.45, 0.10])

    ranked = activelab_candidates(project=project, version=version, labeled_probs=labeled, unlabeled_ids=[],
                                  unlabeled_probs=np.zeros((0, 3)), n=100)

    assert disputed.id not in {example_id for example_id, _, _ in ranked}
    assert len(ranked) == 12


def test_activelab_returns_nothing_on_a_multi_label_project_or_for_no_room(
    multi_project, project, admin, make_examples, version
):
    multi_version = ModelVersion.objects.create(project=multi_project, number=1, status=ModelVersion.Status.READY)
    pool_ids, pool_probs = unlabeled(project, admin, make_examples, [[0.4, 0.3, 0.3]])

    assert activelab_candidates(project=multi_project, version=multi_version, labeled_probs={},
                                unlabeled_ids=pool_ids, unlabeled_probs=pool_probs, n=5) == []
    assert activelab_candidates(project=project, version=version, labeled_probs={}, unlabeled_ids=pool_ids,
                                unlabeled_probs=pool_probs, n=0) == []
    assert [i for i, _, _ in activelab_candidates(project=project, version=version, labeled_probs={},
                                                  unlabeled_ids=pool_ids, unlabeled_probs=pool_probs, n=5)] == pool_ids


def test_without_overlap_a_recheck_is_never_overruled_by_the_consensus(project, admin, annotator, make_examples):
    # Given a seed label and a re-check through the queue that changed it (two people, overlap 1)
    from annotator.models import QueueItem
    from annotator.services.queue import queue_add, queue_lease, queue_submit

    [example] = make_examples(project, admin, [{"text": "a seed", "label": "positive"}])
    queue_add(project=project, examples=[example], reason=QueueItem.Reason.SUSPECT)
    [item] = queue_lease(project=project, user=annotator, n=1)
    queue_submit(user=annotator, item_id=item.id, data={"label": "negative"})

    # When a version trains with a model that sides with the seed label
    summary = consensus_update(project=project, example_ids=[example.id], probs=model_probs(["positive"]),
                               names=LABELS)

    # Then no consensus is taken: the re-checked label stands and stays settled
    assert summary["method"] == "skipped"
    assert stored(example)[0] == ["negative"]
    example.refresh_from_db()
    assert example.settled and example.consensus is None
