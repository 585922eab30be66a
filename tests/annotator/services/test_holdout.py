"""The stable holdout: which labels no version trains on, decided by a hash of the example id among the labels
that were not picked by the queue for being hard, the same for every version."""

from __future__ import annotations

from typing import Any

import pytest

from annotator.models import Example, QueueItem
from annotator.services import holdout as holdout_rule
from annotator.services.annotations import annotation_create
from annotator.services.holdout import (
    HOLDOUT_MIN,
    HOLDOUT_SHARE,
    holdout_hash,
    holdout_reason,
    holdout_split,
    label_origins,
)
from annotator.services.queue import queue_add

pytestmark = pytest.mark.django_db


def _imported(project: Any, user: Any, make_examples: Any, n: int, *, start: int = 0) -> list[Example]:
    rows = [{"external_id": f"i-{i}", "text": f"imported text {i}", "label": ["positive", "negative"][i % 2]}
            for i in range(start, start + n)]
    return make_examples(project, user, rows)


def _answered(project: Any, user: Any, make_examples: Any, n: int, reason: str, *, start: int = 0) -> list[Example]:
    """Unlabeled examples queued with ``reason`` and answered through their queue item."""
    examples = make_examples(project, user, [{"external_id": f"{reason}-{i}", "text": f"{reason} text {i}"}
                                              for i in range(start, start + n)])
    queue_add(project=project, examples=examples, reason=reason)
    items = {item.example_id: item.id for item in QueueItem.objects.filter(example__in=examples)}
    for i, example in enumerate(examples):
        annotation_create(example=example, user=user, labels=[["positive", "negative"][i % 2]],
                          queue_item_id=items[example.id])
    return examples


def _split(project: Any, examples: list[Example]) -> set[int]:
    split = holdout_split(project=project, example_ids=[e.id for e in examples],
                          sources=[e.source for e in examples])
    return {examples[i].id for i in split.holdout}


def test_the_hash_is_fixed_and_spreads_ids_evenly():
    assert holdout_hash(12345) == holdout_hash(12345)
    share = sum(holdout_hash(pk) < HOLDOUT_SHARE for pk in range(1, 20_001)) / 20_000
    assert abs(share - HOLDOUT_SHARE) < 0.01


def test_imports_and_random_answers_are_held_out_by_the_hash_and_queue_picks_never(project, admin, make_examples):
    imported = _imported(project, admin, make_examples, 150)
    random_ = _answered(project, admin, make_examples, 100, QueueItem.Reason.RANDOM)
    uncertain = _answered(project, admin, make_examples, 100, QueueItem.Reason.UNCERTAIN)
    direct = make_examples(project, admin, [{"external_id": f"d-{i}", "text": f"direct {i}"} for i in range(50)])
    for example in direct:  # labeled outside the queue: somebody picked them, not chance
        annotation_create(example=example, user=admin, labels=["positive"])
    everything = imported + random_ + uncertain + direct

    held = _split(project, everything)

    origins = label_origins(project)
    assert {origins[e.id] for e in imported} == {"import"}
    assert {origins[e.id] for e in random_} == {"random"}
    assert {origins[e.id] for e in uncertain} == {"queue:uncertain"}
    assert {origins[e.id] for e in direct} == {"label"}
    eligible = imported + random_
    assert held == {e.id for e in eligible if holdout_hash(e.id) < HOLDOUT_SHARE}
    assert held.isdisjoint({e.id for e in uncertain + direct})
    split = holdout_split(project=project, example_ids=[e.id for e in everything],
                          sources=[e.source for e in everything])
    assert split.record["n"] == len(held)
    assert sum(split.record["sources"].values()) == len(held)
    assert set(split.record["sources"]) <= {"import", "random"}
    assert split.record["eligible"] == len(eligible)


def test_a_relabel_does_not_move_an_example(project, admin, make_examples):
    examples = _imported(project, admin, make_examples, 60)
    before = _split(project, examples)

    for example in examples:
        annotation_create(example=example, user=admin, labels=["negative"])

    assert _split(project, examples) == before


def test_new_labels_never_pull_a_trained_example_into_the_holdout(project, admin, make_examples, monkeypatch):
    # With a cap of 5, the holdout is the five lowest hashes below the share: as labels arrive the cut moves
    # down, so examples leave the holdout for training, and none that trained ever comes back.
    monkeypatch.setattr(holdout_rule, "HOLDOUT_MAX", 5)
    examples = _imported(project, admin, make_examples, 40)
    first = _split(project, examples)
    trained_first = {e.id for e in examples} - first

    more = examples + _imported(project, admin, make_examples, 80, start=40)
    second = _split(project, more)

    assert len(first) <= 5 and len(second) <= 5
    assert second.isdisjoint(trained_first)


def test_the_reason_names_too_few_labels_or_classes():
    names = ["a", "b", "c"]
    assert holdout_reason(["a"] * 10, names) == (
        f"too few held-out labels to measure: 10 held out, at least {HOLDOUT_MIN} needed")
    assert holdout_reason(["a"] * 40 + ["b"] * 2, names).startswith(
        "too few held-out labels to measure: fewer than two classes have 3 or more held-out labels")
    assert holdout_reason(["a"] * 27 + ["b"] * 3, names) is None
    assert holdout_reason([["a", "b"]] * 30, names) is None  # multi-label: label lists
