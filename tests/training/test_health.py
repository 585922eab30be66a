"""Data health (training.health): conflicting near-duplicates, outliers and classes too small to learn."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import health
from training.duplicates import conflicting_duplicates, normalise_text
from training.health import dataset_health, knn_graph


def _random_embeddings(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


# --- conflicting near-duplicates ---------------------------------------------------------------------------
def test_normalisation_ignores_case_spacing_and_punctuation():
    assert normalise_text("  The match, was GREAT!\n") == normalise_text("the match was great") == "the match was great"
    assert normalise_text("Straße") == normalise_text("STRASSE")  # case-folded, not just lower-cased
    assert normalise_text("«¿Qué?»") == "qué"


def test_identical_texts_with_different_labels_are_always_a_group():
    texts = ["The match was GREAT!", "Rates rose again.", "the  match was great", "A new phone launched."]
    labels = ["sport", "business", "business", "tech"]
    # Embeddings far apart: identity after normalisation alone must find the pair.
    groups = conflicting_duplicates(texts, labels, _random_embeddings(4))

    assert len(groups) == 1
    group = groups[0]
    assert group.indices == [0, 2]
    assert group.labels == ["sport", "business"]
    assert group.identical and group.score == 1.0
    assert group.majority_label is None  # one each: nobody has a majority
    assert group.disagreeing == [0, 2]


@given(st.text(min_size=1, max_size=40).filter(lambda t: normalise_text(t) != ""),
       st.sampled_from(["upper", "spaces", "punct"]))
@settings(max_examples=60, deadline=None)
def test_any_text_and_a_reformatted_copy_with_another_label_conflict(text, change):
    copy = {"upper": text.upper(), "spaces": f"  {text}  ", "punct": f"{text}!?"}[change]
    if normalise_text(copy) != normalise_text(text):  # e.g. a character whose upper case folds differently
        return
    groups = conflicting_duplicates([text, copy, "something else entirely"], ["a", "b", "a"], _random_embeddings(3))

    assert [g.indices[:2] for g in groups] == [[0, 1]]


def test_near_duplicates_by_embedding_form_a_group_with_a_majority():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 32))
    x[1] = x[0] + 0.02 * rng.normal(size=32)  # cosine ~0.999
    x[2] = x[0] + 0.02 * rng.normal(size=32)
    texts = ["Shares fell after the results", "Shares fell sharply after results", "Shares fell after results today",
             "one", "two", "three"]
    labels = ["business", "business", "sport", "tech", "tech", "sport"]

    groups = conflicting_duplicates(texts, labels, x)

    assert len(groups) == 1
    group = groups[0]
    assert group.indices == [0, 1, 2]
    assert group.majority_label == "business"
    assert group.disagreeing == [2]
    assert not group.identical and 0.95 <= group.score < 1.0


def test_same_label_duplicates_are_no_conflict():
    x = _random_embeddings(4)
    x[1] = x[0]
    groups = conflicting_duplicates(["Hello there", "hello, there!", "other", "more"], ["a", "a", "b", "b"], x)

    assert groups == []


def test_below_the_threshold_is_no_duplicate():
    rng = np.random.default_rng(2)
    base = rng.normal(size=64)
    other = base + 0.6 * rng.normal(size=64)  # cosine ~0.85
    cosine = float(base @ other / np.linalg.norm(base) / np.linalg.norm(other))
    assert cosine < 0.95

    x = np.vstack([base, other])
    assert conflicting_duplicates(["a text", "b text"], ["x", "y"], x) == []
    assert len(conflicting_duplicates(["a text", "b text"], ["x", "y"], x, threshold=cosine - 0.01)) == 1


def test_multi_label_sets_conflict_only_when_they_differ():
    x = _random_embeddings(4)
    texts = ["Goal and a recipe", "goal and a recipe", "Phone review", "phone review!"]
    labels = [["sports", "food"], ["food", "sports"], ["tech"], ["tech", "food"]]

    groups = conflicting_duplicates(texts, labels, x)

    assert [g.indices for g in groups] == [[2, 3]]
    assert groups[0].labels == [["tech"], ["tech", "food"]]


def test_chains_join_one_group_and_blocks_do_not_split_it():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 16))
    x[17] = x[3] + 0.01 * rng.normal(size=16)
    x[33] = x[17] + 0.01 * rng.normal(size=16)
    labels = ["a"] * 40
    labels[33] = "b"
    texts = [f"text {i}" for i in range(40)]

    small_blocks = conflicting_duplicates(texts, labels, x, block=7)
    one_block = conflicting_duplicates(texts, labels, x)

    assert [g.indices for g in small_blocks] == [[3, 17, 33]] == [g.indices for g in one_block]


def test_a_dense_cluster_of_copies_stays_cheap_and_whole():
    # 3,000 copies of one text: 4.5 million pairs, found as one group without holding them.
    x = np.tile(_random_embeddings(1, 384), (3000, 1))
    labels = ["a"] * 2999 + ["b"]

    groups = conflicting_duplicates(["same"] * 3000, labels, x)

    assert len(groups) == 1 and len(groups[0].indices) == 3000
    assert groups[0].majority_label == "a" and groups[0].disagreeing == [2999]


def test_groups_are_plain_data():
    groups = conflicting_duplicates(["x!", "X", "y"], np.array([0, 1, 1]), _random_embeddings(3))

    assert groups[0].to_dict() == {"indices": [0, 1], "labels": [0, 1], "majority_label": None, "score": 1.0,
                                   "identical": True}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        conflicting_duplicates(["a", "b"], ["x"], _random_embeddings(2))
    with pytest.raises(ValueError, match="threshold"):
        conflicting_duplicates(["a", "b"], ["x", "y"], _random_embeddings(2), threshold=0)


def test_five_thousand_examples_take_seconds():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 384))[rng.integers(0, 20, 5000)] + rng.normal(scale=1.2, size=(5000, 384))
    labels = rng.integers(0, 5, 5000)
    x[4000:4050] = x[:50] + 0.01 * rng.normal(size=(50, 384))
    labels[4000:4050] = (labels[:50] + 1) % 5

    start = time.perf_counter()
    groups = conflicting_duplicates([f"t{i}" for i in range(5000)], labels, x)
    seconds = time.perf_counter() - start

    assert {tuple(g.indices) for g in groups} == {(i, 4000 + i) for i in range(50)}
    assert seconds < 20  # about 1.5 s on 2 busy cores


# --- outliers and class health -----------------------------------------------------------------------------
def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 32)) * 3
    labels = np.r_[np.zeros(120, int), np.ones(120, int), np.full(4, 2)]
    x = centers[labels] + rng.normal(size=(len(labels), 32))
    return x, labels


def test_a_far_away_point_is_the_worst_outlier():
    x, labels = _clusters()
    x[7] = np.random.default_rng(9).normal(size=32) * 40  # somewhere no class lives

    report = dataset_health(x, None, labels, ["a", "b", "c"])

    top = report["outliers"]["top"]
    assert top[0]["index"] == 7 and top[0]["is_outlier"]
    assert 0.0 <= top[0]["score"] < top[-1]["score"] <= 1.0
    assert report["outliers"]["n_flagged"] >= 1
    assert report["seconds"]["total"] >= 0


def test_a_tiny_class_is_too_small_to_learn():
    x, labels = _clusters()

    report = dataset_health(x, None, labels, ["a", "b", "c", "never-used"])

    assert report["class_imbalance"] == {"rarest": "c", "n": 4, "share": round(4 / 244, 6),
                                         "threshold_share": round(0.1 / 3, 6), "flagged": True}
    assert report["too_small"] == ["c", "never-used"]
    by_label = {row["label"]: row for row in report["classes"]}
    assert by_label["c"]["n"] == 4 and any("class-imbalance" in r for r in by_label["c"]["reasons"])
    assert by_label["never-used"]["reasons"] == ["no labeled example"]
    assert not by_label["a"]["too_small"]


def test_balanced_classes_are_healthy():
    x, _ = _clusters()
    labels = np.arange(len(x)) % 3

    report = dataset_health(x, None, labels, ["a", "b", "c"])

    assert report["too_small"] == [] and report["class_imbalance"]["flagged"] is False


def test_outliers_carry_what_the_model_leans_to():
    x, labels = _clusters()
    probs = np.full((len(x), 3), 0.1)
    probs[:, 1] = 0.8

    report = dataset_health(x, probs, labels, ["a", "b", "c"], top=5)

    assert len(report["outliers"]["top"]) == 5
    assert {(r["predicted"], r["confidence"]) for r in report["outliers"]["top"]} == {("b", 0.8)}


def test_multi_label_counts_each_label():
    x, _ = _clusters()
    labels = [[0] if i % 2 else [0, 1] for i in range(len(x))]
    labels[0] = [2]

    report = dataset_health(x, None, labels, ["a", "b", "c"], multi_label=True)

    assert [row["n"] for row in report["classes"]] == [243, 121, 1]
    assert report["too_small"] == ["c"]


def test_the_knn_graph_is_exact_below_the_reference_size_and_never_holds_the_row_itself():
    x = _random_embeddings(300, 16)
    graph = knn_graph(x, k=5)

    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosine = 1 - unit @ unit.T
    np.fill_diagonal(cosine, np.inf)
    expected = np.sort(cosine, axis=1)[:, :5]
    assert graph.shape == (300, 300) and graph.nnz == 1500
    np.testing.assert_allclose(graph.data.reshape(300, 5), expected, atol=1e-5)
    assert not (graph.indices.reshape(300, 5) == np.arange(300)[:, None]).any()


def test_a_sampled_reference_gives_k_neighbours_other_than_the_row():
    x = _random_embeddings(500, 16)
    graph = knn_graph(x, k=4, max_reference=100)

    assert graph.nnz == 2000
    assert not (graph.indices.reshape(500, 4) == np.arange(500)[:, None]).any()
    assert (np.diff(graph.data.reshape(500, 4), axis=1) >= -1e-9).all()


def test_too_few_examples_give_no_outliers_but_class_health():
    report = dataset_health(_random_embeddings(2), None, np.array([0, 1]), ["a", "b"])

    assert report["outliers"]["top"] == [] and report["notes"]
    assert [row["n"] for row in report["classes"]] == [1, 1]


@pytest.mark.skipif(not health._datalab_available(), reason="cleanlab's Datalab needs the optional datasets package")
def test_datalab_and_the_rules_without_it_agree():
    x, labels = _clusters()
    x[7] *= 30

    with_datalab = dataset_health(x, None, labels, ["a", "b", "c"], use_datalab=True)
    rules = dataset_health(x, None, labels, ["a", "b", "c"], use_datalab=False)

    assert with_datalab["method"] == "datalab" and rules["method"] == "cleanlab-rules"
    assert with_datalab["outliers"] == rules["outliers"]
    assert with_datalab["classes"] == rules["classes"]
    assert with_datalab["class_imbalance"] == rules["class_imbalance"]


def test_without_datalab_the_same_rules_run():
    x, labels = _clusters()

    report = dataset_health(x, None, labels, ["a", "b", "c"], use_datalab=False)

    assert report["method"] == "cleanlab-rules" and report["notes"] == []
