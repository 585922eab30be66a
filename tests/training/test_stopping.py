import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from training.stopping import changed_share, prediction_agreement, predictions_stopped


def test_identical_predictions_agree_perfectly() -> None:
    predictions = np.array([0, 1, 2, 1, 0])

    assert prediction_agreement(predictions, predictions.copy()) == 1.0
    assert changed_share(predictions, predictions.copy()) == 0.0


def test_both_versions_predicting_one_constant_class_agree_perfectly() -> None:
    # Cohen's formula is 0/0 here; sklearn would return nan.
    constant = np.zeros(20, dtype=int)

    assert prediction_agreement(constant, constant.copy()) == 1.0


def test_two_different_constant_predictions_do_not_agree() -> None:
    assert prediction_agreement(np.zeros(10, dtype=int), np.ones(10, dtype=int)) == 0.0
    assert changed_share(np.zeros(10, dtype=int), np.ones(10, dtype=int)) == 1.0


def test_nothing_to_compare_gives_none() -> None:
    empty = np.array([], dtype=int)

    assert prediction_agreement(empty, empty) is None
    assert changed_share(empty, empty) is None


def test_kappa_corrects_for_chance_agreement() -> None:
    # given 100 items, 2 classes, one change: 99% raw agreement, kappa a little lower
    before = np.array([0] * 50 + [1] * 50)
    after = before.copy()
    after[0] = 1

    kappa = prediction_agreement(before, after)

    assert kappa == pytest.approx(cohen_kappa_score(before, after))
    assert kappa is not None and 0.97 < kappa < 0.99
    assert changed_share(before, after) == pytest.approx(0.01)


def test_label_names_work_like_indices() -> None:
    before = np.array(["sport", "tech", "food", "tech"])
    after = np.array(["sport", "tech", "tech", "tech"])

    assert prediction_agreement(before, after) == pytest.approx(
        prediction_agreement(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1]))
    )


def test_multi_label_kappa_is_over_the_flattened_indicators() -> None:
    before = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    after = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])

    assert prediction_agreement(before, after) == pytest.approx(cohen_kappa_score(before.ravel(), after.ravel()))
    assert changed_share(before, after) == pytest.approx(0.25)  # one item of four changed


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same items"):
        prediction_agreement(np.zeros(3), np.zeros(4))


def test_stopped_only_when_each_of_the_last_window_kappas_reaches_the_threshold() -> None:
    assert predictions_stopped([0.8, 0.995, 0.99, 1.0])
    assert not predictions_stopped([0.995, 0.99, 1.0, 0.98])  # the newest version moved the predictions
    assert not predictions_stopped([0.995, 0.98, 1.0, 1.0])  # one dip in the window resets the run
    # the mean of the window is above 0.99, but one version is not: not stopped (stricter than the mean rule)
    assert not predictions_stopped([1.0, 1.0, 0.985])
    assert not predictions_stopped([1.0, 1.0])  # fewer versions than the window
    assert not predictions_stopped([1.0, None, 1.0, 1.0])  # an uncomparable version breaks the run
    assert predictions_stopped([None, 1.0, 1.0, 1.0])


def test_window_and_threshold_can_be_chosen() -> None:
    assert predictions_stopped([0.96, 0.97], window=2, threshold=0.95)
    assert not predictions_stopped([0.96, 0.97], window=2, threshold=0.97 + 1e-9)
    with pytest.raises(ValueError, match="window"):
        predictions_stopped([1.0], window=0)


labels = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(pairs=labels)
def test_kappa_is_symmetric_bounded_and_one_exactly_when_nothing_changed(pairs: list[tuple[int, int]]) -> None:
    before = np.array([a for a, _ in pairs])
    after = np.array([b for _, b in pairs])

    kappa = prediction_agreement(before, after)
    share = changed_share(before, after)

    assert kappa is not None and share is not None
    assert -1.0 - 1e-12 <= kappa <= 1.0 + 1e-12
    assert kappa == pytest.approx(prediction_agreement(after, before))
    assert 0.0 <= share <= 1.0
    assert (share == 0.0) == (kappa == pytest.approx(1.0))


@settings(max_examples=80, deadline=None)
@given(kappas=st.lists(st.one_of(st.none(), st.floats(-1.0, 1.0)), max_size=8),
       window=st.integers(1, 4), threshold=st.floats(0.5, 1.0))
def test_the_rule_looks_only_at_the_last_window(kappas: list[float | None], window: int, threshold: float) -> None:
    stopped = predictions_stopped(kappas, window=window, threshold=threshold)

    last = kappas[-window:]
    assert stopped == (len(kappas) >= window and all(k is not None and k >= threshold for k in last))
    # a new version below the threshold always restarts the count
    assert not predictions_stopped([*kappas, threshold - 0.01], window=window, threshold=threshold)
    # older history never matters once the window is full of agreeing versions
    assert predictions_stopped([*kappas, *[threshold] * window], window=window, threshold=threshold)
