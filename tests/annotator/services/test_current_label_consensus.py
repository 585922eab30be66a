"""The current-label rule with a stored CROWDLAB consensus, as a pure function of (votes, consensus): a review
decision wins; else the consensus while no answer is newer than it; else the majority rule of
test_current_label.py, unchanged for items with one person's answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from annotator.models import AnnotationKind
from annotator.services.annotations import Vote, current_labels_from

REVIEW, LABEL, RELABEL, IMPORT = (
    AnnotationKind.REVIEW,
    AnnotationKind.LABEL,
    AnnotationKind.RELABEL,
    AnnotationKind.IMPORT,
)


def votes(*answers: tuple[int, str, str]) -> list[Vote]:
    """(user id, kind, label) in the order they were given; annotation ids 1, 2, ..."""
    return [Vote(annotation_id=i, user_id=user, kind=kind, labels=(label,))
            for i, (user, kind, label) in enumerate(answers, 1)]


def consensus(label: str, through: int) -> dict:
    return {"labels": [label], "quality": 0.8, "through_annotation": through}


def test_the_consensus_wins_over_a_majority_that_has_not_moved_since():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"), (3, RELABEL, "b"))

    assert current_labels_from(history) == (("b",), RELABEL)
    assert current_labels_from(history, consensus("a", 3)) == (("a",), LABEL)


def test_the_consensus_breaks_a_tie_instead_of_the_latest_answer():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"))

    assert current_labels_from(history, consensus("a", 2))[0] == ("a",)


def test_a_newer_answer_hands_the_item_back_to_the_majority_rule():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"), (3, RELABEL, "b"))

    # the consensus saw annotations up to 2 only: answer 3 is new evidence
    assert current_labels_from(history, consensus("a", 2)) == current_labels_from(history)


def test_a_newer_answer_from_someone_who_already_answered_counts_as_new_evidence_too():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"), (1, RELABEL, "a"))

    assert current_labels_from(history, consensus("b", 2)) == (("a",), RELABEL)


def test_a_review_decision_wins_over_the_consensus():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"), (9, REVIEW, "c"))

    assert current_labels_from(history, consensus("a", 3)) == (("c",), REVIEW)


def test_a_review_decision_after_the_consensus_does_not_count_as_an_answer_it_missed():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"), (9, REVIEW, "c"))

    assert current_labels_from(history, consensus("a", 2)) == (("c",), REVIEW)


def test_a_consensus_nobody_answered_is_not_taken():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"))

    assert current_labels_from(history, consensus("c", 2)) == current_labels_from(history)


def test_a_malformed_consensus_is_ignored():
    history = votes((1, LABEL, "a"), (2, RELABEL, "b"))

    for broken in ({}, {"labels": ["a"]}, {"labels": [], "through_annotation": 5}, {"labels": "a", "through_annotation": 5}):
        assert current_labels_from(history, broken) == current_labels_from(history)


# --- regression: one person's answers follow today's rule whatever is stored ----------------------------------
answer = st.tuples(st.sampled_from([IMPORT, LABEL, RELABEL]), st.sampled_from("abc"))


@given(st.lists(answer, min_size=1, max_size=20), st.sampled_from("abc"), st.integers(0, 30))
def test_a_single_annotators_item_ignores_any_consensus(answers, label, through):
    history = votes(*[(1, kind, given_label) for kind, given_label in answers])

    assert current_labels_from(history, consensus(label, through)) == current_labels_from(history)
    assert current_labels_from(history, None) == current_labels_from(history)


@given(st.lists(st.tuples(st.integers(1, 4), answer), min_size=1, max_size=30), st.sampled_from("abc"))
def test_without_a_consensus_or_with_one_that_is_out_of_date_the_rule_is_the_majority(answers, label):
    history = votes(*[(user, kind, given_label) for user, (kind, given_label) in answers])
    latest_id = len(history)

    assert current_labels_from(history, consensus(label, latest_id - 1)) == current_labels_from(history)


@given(st.lists(st.tuples(st.integers(1, 4), answer), min_size=2, max_size=30), st.sampled_from("abc"))
def test_the_label_is_always_someones_latest_answer(answers, label):
    history = votes(*[(user, kind, given_label) for user, (kind, given_label) in answers])
    latest = {v.user_id: v for v in history}

    labels, kind = current_labels_from(history, consensus(label, len(history)))

    assert (labels, kind) in {(v.labels, v.kind) for v in latest.values()}
