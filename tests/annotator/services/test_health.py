"""services.health: the health a train job stores, the suspicion it raises, and settling a conflict group."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.errors import InvalidInput
from annotator.models import Annotation, AnnotationKind, Example
from annotator.services.health import conflict_group_settle, health_for_version, noise_rows_with_conflicts
from tests.annotator.assertions import counts
from tests.annotator.health_rows import LABELS, TEXTS, health_examples, topic_embeddings

pytestmark = pytest.mark.django_db

NAMES = ["positive", "negative", "neutral"]


def _health(ids: list[int], labels: list[object] | None = None) -> tuple[dict, dict]:
    embeddings = topic_embeddings(len(TEXTS))
    probs = np.full((len(TEXTS), 3), 1 / 3)
    return health_for_version(snapshot_example_ids=ids, texts=TEXTS, labels=labels or LABELS, embeddings=embeddings,
                              probs=probs, names=NAMES)


def test_health_is_json_and_names_examples_by_id():
    ids = [100 + i for i in range(len(TEXTS))]

    health, suspicious = _health(ids)

    json.dumps(health)  # stored in ModelVersion.metrics as it is
    group = health["conflicts"]["groups"][0]
    assert group["example_ids"] == [100, 101, 102]
    assert group["labels"] == ["negative", "positive", "negative"]
    assert group["majority_label"] == "negative" and group["identical"] and group["size"] == 3
    assert health["conflicts"]["n_groups"] == 1 and health["conflicts"]["n_suspicious"] == 1
    # The member that disagrees with the majority is the suspect, with a reason a person can read.
    assert list(suspicious) == [101]
    assert "most of them are labeled negative" in suspicious[101]
    assert health["outliers"]["top"][0]["example_id"] == 109
    assert "neutral" in health["too_small"]
    assert set(health["seconds"]) >= {"conflicts", "health_total"}


def test_without_a_majority_every_member_is_suspect():
    labels = list(LABELS)
    labels[2] = "neutral"  # negative, positive, neutral: a three-way tie

    _health_dict, suspicious = _health(list(range(len(TEXTS))), labels)

    assert sorted(suspicious) == [0, 1, 2]
    assert "no label has a majority" in suspicious[0]


def test_multi_label_groups_keep_label_lists():
    labels = [[label] for label in LABELS]
    labels[1] = ["positive", "negative"]

    health, suspicious = _health(list(range(len(TEXTS))), labels)

    group = health["conflicts"]["groups"][0]
    assert group["labels"] == [["negative"], ["positive", "negative"], ["negative"]]
    assert group["majority_label"] == ["negative"]
    assert list(suspicious) == [1]


def test_conflicts_raise_suspicion_in_the_noise_rows():
    rows = [{"example_id": 1, "label_quality": 0.9, "is_issue": False},
            {"example_id": 2, "label_quality": 0.01, "is_issue": True},
            {"example_id": 3, "label_quality": 0.7, "is_issue": False}]

    added = noise_rows_with_conflicts(rows, {1: "conflict", 2: "conflict"})

    assert added == 1
    assert [(r["is_issue"], r["label_quality"]) for r in rows] == [(True, 0.05), (True, 0.01), (False, 0.7)]


def test_settling_a_group_relabels_and_settles_every_member(project, admin, reviewer):
    members = health_examples(project, admin)[:3]

    result = conflict_group_settle(project=project, user=reviewer, example_ids=[m.id for m in members],
                                   label="negative")

    assert result == {"settled": 3, "changed": 1, "example_ids": [m.id for m in members], "label": "negative",
                      "labels": ["negative"]}
    for member in Example.objects.filter(id__in=[m.id for m in members]):
        assert [label.name for label in member.labels.all()] == ["negative"]
        assert member.settled
        decision = Annotation.objects.filter(example=member).latest("id")
        assert (decision.kind, decision.labels, decision.user) == (AnnotationKind.REVIEW, ["negative"], reviewer)


@pytest.mark.parametrize(("example_ids", "label", "field"), [
    ([], "negative", "example_ids"),
    ("1,2", "negative", "example_ids"),
    ([1, "two"], "negative", "example_ids"),
    ([2**70], "negative", "example_ids"),
    (None, "negative", "example_ids"),
    ("members", "no-such-label", "label"),
    ("members", None, "label"),
    ("members", ["negative", "positive"], "label"),
    ("members+missing", "negative", "example_ids"),
    ("members+repeat", "negative", "example_ids"),
])
def test_a_bad_settlement_names_the_field_and_writes_nothing(project, admin, reviewer, example_ids, label, field):
    members = [m.id for m in health_examples(project, admin)[:3]]
    if isinstance(example_ids, str) and example_ids.startswith("members"):
        example_ids = {"members": members, "members+missing": [*members, 999_999],
                       "members+repeat": [*members, members[0]]}[example_ids]
    before = counts()

    with pytest.raises(InvalidInput) as error:
        conflict_group_settle(project=project, user=reviewer, example_ids=example_ids, label=label)

    assert {e.get("field") for e in error.value.errors} == {field}
    assert counts() == before
    assert not Example.objects.filter(id__in=members, settled=True).exists()


def test_an_example_of_another_project_fails_the_whole_group(project, make_project, admin, reviewer):
    members = health_examples(project, admin)[:2]
    elsewhere = health_examples(make_project(admin, name="Other"), admin, prefix="o")[0]
    before = counts()

    with pytest.raises(InvalidInput) as error:
        conflict_group_settle(project=project, user=reviewer, example_ids=[members[0].id, members[1].id, elsewhere.id],
                              label="negative")

    assert error.value.errors == [{"index": 2, "field": "example_ids",
                                   "message": f"no example {elsewhere.id} in this project"}]
    assert counts() == before
