"""The current-label rule: the latest review decision wins; otherwise each user's latest answer counts once
and the most frequent answer wins, the most recent one breaking ties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.models import AnnotationKind, Example
from annotator.services.annotations import Vote, current_labels_from

REVIEW, LABEL, RELABEL, IMPORT = (
    AnnotationKind.REVIEW,
    AnnotationKind.LABEL,
    AnnotationKind.RELABEL,
    AnnotationKind.IMPORT,
)


def votes(*answers: tuple[int, str, str | tuple[str, ...]]) -> list[Vote]:
    """(user id, kind, label or labels) in the order they were given."""
    return [
        Vote(
            annotation_id=i, user_id=user, kind=kind, labels=(labels,) if isinstance(labels, str) else labels
        )
        for i, (user, kind, labels) in enumerate(answers, 1)
    ]


def test_no_annotations_means_unlabeled():
    assert current_labels_from([]) == ((), "")


def test_a_single_users_latest_answer_is_the_label():
    assert current_labels_from(votes((1, LABEL, "a"), (1, RELABEL, "b"), (1, RELABEL, "c"))) == (
        ("c",),
        RELABEL,
    )


def test_the_majority_of_users_wins_over_a_more_recent_minority():
    result = current_labels_from(votes((1, LABEL, "a"), (2, RELABEL, "a"), (3, RELABEL, "b")))

    assert result == (("a",), RELABEL)


def test_each_user_counts_once_with_their_latest_answer():
    # User 1 said "a" three times but changed their mind to "b"; users 2 and 3 say "c" and "b".
    result = current_labels_from(
        votes(
            (1, LABEL, "a"),
            (1, RELABEL, "a"),
            (1, RELABEL, "a"),
            (2, RELABEL, "c"),
            (1, RELABEL, "b"),
            (3, RELABEL, "b"),
        )
    )

    assert result == (("b",), RELABEL)


def test_a_tie_goes_to_the_most_recent_answer():
    assert current_labels_from(votes((1, IMPORT, "a"), (2, RELABEL, "b")))[0] == ("b",)
    assert current_labels_from(votes((2, RELABEL, "b"), (1, IMPORT, "a")))[0] == ("a",)


def test_the_tie_break_looks_at_each_users_latest_answer_not_their_first():
    # Users 1 and 2 tie; user 1 answered last (re-stating "a"), so "a" is the most recent of the tied.
    result = current_labels_from(votes((1, LABEL, "a"), (2, RELABEL, "b"), (1, RELABEL, "a")))

    assert result == (("a",), RELABEL)


def test_the_latest_review_decision_wins_against_any_majority():
    result = current_labels_from(
        votes(
            (1, LABEL, "a"),
            (9, REVIEW, "b"),
            (2, RELABEL, "a"),
            (3, RELABEL, "a"),
            (8, REVIEW, "c"),
            (4, RELABEL, "a"),
        )
    )

    assert result == (("c",), REVIEW)


def test_multi_label_answers_count_as_whole_sets():
    result = current_labels_from(
        votes((1, LABEL, ("a", "b")), (2, RELABEL, ("a",)), (3, RELABEL, ("a", "b")))
    )

    assert result == (("a", "b"), RELABEL)


def test_order_is_by_annotation_id_not_by_list_order():
    given_votes = votes((1, LABEL, "a"), (1, RELABEL, "b"))

    assert current_labels_from(list(reversed(given_votes))) == (("b",), RELABEL)


# --- properties -----------------------------------------------------------------------------------------
answer = st.tuples(
    st.integers(1, 4), st.sampled_from([IMPORT, LABEL, RELABEL, REVIEW]), st.sampled_from("abc")
)


@settings(suppress_health_check=[HealthCheck.too_slow])  # a busy CI machine must not fail a property
@given(st.lists(answer, min_size=1, max_size=30))
def test_the_label_is_always_someones_latest_answer_or_the_latest_review(answers):
    history = votes(*answers)

    labels, kind = current_labels_from(history)

    reviews = [v for v in history if v.kind == REVIEW]
    if reviews:
        assert (labels, kind) == (reviews[-1].labels, REVIEW)
    else:
        latest = {v.user_id: v for v in history}
        assert (labels, kind) in {(v.labels, v.kind) for v in latest.values()}
        tally = [sum(v.labels == other.labels for other in latest.values()) for v in latest.values()]
        assert sum(v.labels == labels for v in latest.values()) == max(tally)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(answer.filter(lambda a: a[1] != REVIEW), min_size=1, max_size=30))
def test_renaming_users_does_not_change_the_label(answers):
    renamed = [(10 - user, kind, label) for user, kind, label in answers]

    assert current_labels_from(votes(*answers)) == current_labels_from(votes(*renamed))


@given(
    st.lists(
        st.tuples(st.sampled_from([IMPORT, LABEL, RELABEL]), st.sampled_from("abc")), min_size=1, max_size=20
    )
)
def test_a_single_annotator_always_gets_their_latest_answer(answers):
    labels, _ = current_labels_from(votes(*[(1, kind, label) for kind, label in answers]))

    assert labels == (answers[-1][1],)


# --- the stored label follows the rule --------------------------------------------------------------------
def stored(example: Example) -> tuple[list[str], str]:
    example.refresh_from_db()
    return list(example.labels.order_by("position").values_list("name", flat=True)), example.label_source


@pytest.mark.django_db
def test_each_new_annotation_refreshes_the_stored_label(
    project, admin, reviewer, make_user, make_examples, annotate
):
    [example] = make_examples(project, admin, [{"text": "hmm", "label": "positive"}])
    bob, carl = make_user("bob"), make_user("carl")

    annotate(example, bob, "negative")
    assert stored(example) == (["negative"], "relabel")  # tie with alice's import: the most recent wins

    annotate(example, carl, "positive")
    assert stored(example) == (["positive"], "relabel")  # two positives against one negative

    annotate(example, reviewer, "neutral", kind="review")
    assert stored(example) == (["neutral"], "review")

    annotate(example, bob, "positive")
    assert stored(example) == (["neutral"], "review")  # later votes do not undo a review


@pytest.mark.django_db
def test_the_stored_label_of_a_multi_label_example_is_the_whole_set(
    multi_project, admin, reviewer, make_examples, annotate
):
    [example] = make_examples(multi_project, admin, [{"text": "x", "labels": ["tech"]}])

    annotate(example, reviewer, "food", "sports")

    assert stored(example) == (["sports", "food"], "relabel")
