"""The stopping signal: kappa of consecutive versions on the stop set, and the stabilizing-predictions rule."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from annotator.models import ModelVersion
from annotator.services.stability import (
    MIN_COMPARED,
    STOP_SET_SHARE,
    in_stop_set,
    stop_set_predictions,
    version_stability_update,
)
from tests.annotator.services import stability_rows as rows

STOPPED = rows.STOPPED


def flip_first(k: int, examples):
    """A prediction function that changes the first ``k`` stop-set examples' class and keeps the rest."""
    changed = {e.id for e in rows.members(examples)[:k]}

    def predict(position, example):
        label = rows.baseline(position, example)[0]
        if example.id in changed:
            return [rows.LABELS[(rows.LABELS.index(label) + 1) % 3]]
        return [label]

    return predict


def test_the_stop_set_is_a_fixed_share_of_ids_chosen_in_sql_as_in_python(project, admin):
    examples = rows.pool(project, admin, 400)
    first = rows.scored_version(project, 1, examples)
    second = rows.scored_version(project, 2, examples)

    compared = stop_set_predictions(earlier=first, later=second)

    expected = [e.id for e in examples if in_stop_set(e.id)]
    assert list(compared) == expected
    assert 0.15 < len(expected) / len(examples) < 0.35  # about STOP_SET_SHARE
    assert STOP_SET_SHARE == 0.25
    # membership depends on the id only: consecutive ids are not taken in runs (not just every 4th id)
    assert {e.id % 4 for e in rows.members(examples)} == {0, 1, 2, 3}


def test_kappa_with_the_previous_version_on_the_stop_set(project, admin):
    # given v1, and v2 changing 3 stop-set predictions and every prediction outside the stop set
    examples = rows.pool(project, admin, 400)
    members = rows.members(examples)
    rows.scored_version(project, 1, examples)
    inside = flip_first(3, examples)

    def predict(position, example):
        return inside(position, example) if in_stop_set(example.id) else ["negative"]

    second = rows.scored_version(project, 2, examples, predict)

    stability = version_stability_update(version=second)

    positions = {e.id: i for i, e in enumerate(examples)}
    before = [rows.baseline(positions[e.id], e)[0] for e in members]
    after = [predict(positions[e.id], e)[0] for e in members]
    assert stability["kappa"] == pytest.approx(cohen_kappa_score(before, after), abs=1e-4)
    assert stability["n"] == len(members)
    assert stability["changed"] == pytest.approx(3 / len(members), abs=1e-4)
    assert stability["against_version"] == 1
    assert stability["stopped"] is False
    assert stability["message"].startswith(f"predictions still changing: kappa {stability['kappa']:.3f} with v1")
    second.refresh_from_db()
    assert second.stability == stability


def test_examples_labeled_when_a_version_scored_them_are_not_compared(project, admin):
    # given 300 examples both versions scored unlabeled, and 100 that were labeled when v2 scored them
    examples = rows.pool(project, admin, 400)
    unlabeled, labeled_later = examples[:300], examples[300:]
    rows.scored_version(project, 1, examples)
    second = rows.scored_version(project, 2, unlabeled, labeled=labeled_later)

    stability = version_stability_update(version=second)

    assert stability["n"] == len(rows.members(unlabeled)) < len(rows.members(examples))
    assert stability["kappa"] == 1.0  # the labeled ones' noise scores predict something else


def test_the_first_version_has_a_reason_instead_of_a_kappa(project, admin):
    examples = rows.pool(project, admin, 200)
    first = rows.scored_version(project, 1, examples)

    stability = version_stability_update(version=first)

    assert stability["kappa"] is None
    assert stability["against_version"] is None
    assert stability["stopped"] is False
    assert stability["reason"] == "no earlier ready version to compare with"
    assert stability["message"] == "no stopping signal yet: no earlier ready version to compare with"


def test_too_few_common_stop_set_examples_give_a_reason(project, admin):
    examples = rows.pool(project, admin, 400)
    few = rows.members(examples)[: MIN_COMPARED - 1]
    rows.scored_version(project, 1, examples)
    second = rows.scored_version(project, 2, few)

    stability = version_stability_update(version=second)

    assert stability["kappa"] is None
    assert stability["n"] == MIN_COMPARED - 1
    assert stability["reason"].startswith(f"only {MIN_COMPARED - 1} stop-set examples scored unlabeled by both v1 and v2")


def test_failed_versions_are_skipped(project, admin):
    examples = rows.pool(project, admin, 400)
    rows.scored_version(project, 1, examples)
    rows.scored_version(project, 2, examples, flip_first(40, examples), status=ModelVersion.Status.FAILED)
    third = rows.scored_version(project, 3, examples)

    assert version_stability_update(version=third)["against_version"] == 1
    assert third.stability["kappa"] == 1.0


def test_stopped_once_three_consecutive_versions_agree(project, admin):
    # given four versions whose stop-set predictions no longer change
    examples = rows.pool(project, admin, 400)
    versions = [rows.scored_version(project, n, examples) for n in (1, 2, 3, 4)]

    results = [version_stability_update(version=v) for v in versions]

    assert [r["stopped"] for r in results] == [False, False, False, True]
    assert results[2]["window"] == [None, 1.0, 1.0]  # v1 has nothing to compare with: it breaks the run
    assert results[3]["window"] == [1.0, 1.0, 1.0]
    assert results[3]["window_versions"] == [2, 3, 4]
    assert results[3]["threshold"] == 0.99
    assert results[3]["message"] == STOPPED


def test_one_version_that_moves_the_predictions_keeps_the_signal_open(project, admin):
    # given v2 and v3 agreeing with their predecessors, and v4 changing one stop-set prediction in ~100:
    # kappa about 0.985, so the window's mean is still above 0.99 but not each kappa
    examples = rows.pool(project, admin, 400)
    versions = [rows.scored_version(project, 1, examples), rows.scored_version(project, 2, examples),
                rows.scored_version(project, 3, examples), rows.scored_version(project, 4, examples, flip_first(1, examples))]

    results = [version_stability_update(version=v) for v in versions]

    last = results[-1]
    assert 0.97 < last["kappa"] < 0.99
    assert sum(last["window"]) / 3 >= 0.99
    assert last["stopped"] is False
    assert "(2 so far)" not in last["message"] and "(0 so far)" in last["message"]


def test_the_rule_reads_the_stored_kappas_of_earlier_versions(project, admin):
    # given v2 and v3 whose stored kappas are high, then v4 agreeing with v3
    examples = rows.pool(project, admin, 400)
    versions = [rows.scored_version(project, n, examples) for n in (1, 2, 3, 4)]
    ModelVersion.objects.filter(pk=versions[1].pk).update(stability={"kappa": 0.995, "threshold": 0.99})
    ModelVersion.objects.filter(pk=versions[2].pk).update(stability={"kappa": 0.5, "threshold": 0.99})

    assert version_stability_update(version=versions[3])["stopped"] is False

    ModelVersion.objects.filter(pk=versions[2].pk).update(stability={"kappa": 0.992, "threshold": 0.99})
    assert version_stability_update(version=versions[3])["window"] == [0.995, 0.992, 1.0]
    assert versions[3].stability["stopped"] is True


def test_multi_label_kappa_is_over_the_flattened_indicators(multi_project, admin):
    examples = rows.pool(multi_project, admin, 400)
    members = rows.members(examples)
    changed = {e.id for e in members[:5]}

    def before(position, example):
        return ["sports", "tech"] if position % 2 else ["food"]

    def after(position, example):
        labels = before(position, example)
        return [*labels, "tech"] if example.id in changed and "tech" not in labels else labels

    rows.scored_version(multi_project, 1, examples, before)
    second = rows.scored_version(multi_project, 2, examples, after)

    stability = version_stability_update(version=second)

    names = ["sports", "food", "tech"]
    positions = {e.id: i for i, e in enumerate(examples)}
    flat_before = [int(n in before(positions[e.id], e)) for e in members for n in names]
    flat_after = [int(n in after(positions[e.id], e)) for e in members for n in names]
    assert stability["kappa"] == pytest.approx(cohen_kappa_score(flat_before, flat_after), abs=1e-4)
    assert stability["changed"] == pytest.approx(len([e for e in members[:5] if positions[e.id] % 2 == 0])
                                                 / len(members), abs=1e-4)
