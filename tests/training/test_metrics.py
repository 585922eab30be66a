import json

import numpy as np
import pytest

from training.metrics import aggregate_over_seeds, evaluate

NAMES = ["business", "sport", "tech", "politics"]


def test_overall_metrics_and_confusion_matrix() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    result = evaluate(y_true, y_pred, NAMES)
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert np.array(result["confusion_matrix"]).shape == (4, 4)
    assert result["confusion_matrix"][0] == [1, 1, 0, 0]
    assert result["confusion_matrix"][2] == [1, 0, 1, 0]
    assert "ece" not in result
    json.dumps(result)


def test_absent_class_has_a_zero_row_and_does_not_drag_macro_f1() -> None:
    # "politics" occurs in neither y_true nor y_pred.
    y = np.array([0, 1, 2, 0, 1, 2])
    result = evaluate(y, y, NAMES)
    assert result["macro_f1"] == pytest.approx(1.0)
    politics = result["per_class"][3]
    assert politics == {"label": "politics", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert [row["support"] for row in result["per_class"]] == [2, 2, 2, 0]


def test_predicted_but_absent_class_counts_against_macro_f1() -> None:
    result = evaluate(np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1]), NAMES)
    assert result["per_class"][3]["precision"] == 0.0
    assert result["macro_f1"] < 1.0


def test_slices_get_their_own_metrics() -> None:
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 1, 2, 1, 0, 2])
    source = np.array(["seed", "seed", "seed", "production", "production", "production"])
    result = evaluate(
        y_true,
        y_pred,
        NAMES,
        slices={"seed": source == "seed", "production": source == "production", "none": np.zeros(6, bool)},
    )
    assert result["slices"]["seed"]["accuracy"] == 1.0
    assert result["slices"]["production"]["accuracy"] == pytest.approx(1 / 3)
    assert result["slices"]["production"]["n"] == 3
    assert result["slices"]["none"]["n"] == 0 and result["slices"]["none"]["macro_f1"] is None
    json.dumps(result)


def test_probs_add_ece() -> None:
    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.8, 0.05, 0.05]])
    result = evaluate(np.array([0, 0]), np.array([0, 1]), NAMES, probs=probs)
    assert result["ece"] == pytest.approx((0.1 + 0.8) / 2)


def test_multilabel_metrics() -> None:
    y_true = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]])
    y_pred = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    result = evaluate(y_true, y_pred, NAMES, multi_label=True, probs=y_pred * 0.8 + 0.1)
    assert result["subset_accuracy"] == pytest.approx(1 / 3)
    assert 0 < result["micro_f1"] < 1
    assert result["hamming_loss"] == pytest.approx(2 / 12)
    assert len(result["per_class"]) == 4 and result["per_class"][3]["support"] == 0
    assert "confusion_matrix" not in result and "ece" in result


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        evaluate(np.array([0, 1]), np.array([0]), NAMES)
    with pytest.raises(ValueError):
        evaluate(np.array([0, 7]), np.array([0, 1]), NAMES)
    with pytest.raises(ValueError):
        evaluate(np.array([0, 1]), np.array([0, 1]), NAMES, slices={"bad": np.array([True])})


def test_seed_aggregation() -> None:
    runs = [{"macro_f1": 0.8, "accuracy": 0.9}, {"macro_f1": 0.9, "accuracy": 0.9, "ece": 0.05}]
    summary = aggregate_over_seeds(runs)
    assert summary["macro_f1"]["mean"] == pytest.approx(0.85)
    assert summary["macro_f1"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert summary["ece"] == {"mean": 0.05, "std": 0.0, "n": 1}
