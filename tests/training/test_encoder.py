from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from training.embedding_cache import EmbeddingCache, text_key
from training.encoder import Encoder, EncoderConfig

TEXTS = [
    "Short.",
    "A considerably longer sentence about the football match that ended in a draw.",
    "Medium length text about cooking.",
    "x",
    "Another fairly long sentence, this one about laptops, processors and memory upgrades.",
]


def test_encoder_config_rejects_unknown_pooling_and_truncation(default_model_dir):
    with pytest.raises(ValueError, match="pooling must be one of"):
        EncoderConfig(model_dir=default_model_dir, pooling="max")
    with pytest.raises(ValueError, match="truncation_side"):
        EncoderConfig(model_dir=default_model_dir, truncation_side="middle")
    with pytest.raises(ValueError, match="max_length"):
        EncoderConfig(model_dir=default_model_dir, max_length=0)


def test_encoder_refuses_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        Encoder(EncoderConfig(model_dir=str(tmp_path)))


@pytest.mark.slow
def test_mean_and_cls_pooling_give_different_embeddings(minilm_encoder, default_model_dir):
    cls_encoder = Encoder(
        EncoderConfig(model_dir=default_model_dir, max_length=32, pooling="cls"),
        model=minilm_encoder.model,
        tokenizer=minilm_encoder.tokenizer,
    )

    mean = minilm_encoder.embed(TEXTS)
    cls = cls_encoder.embed(TEXTS)

    assert mean.shape == cls.shape == (len(TEXTS), 384)
    assert mean.dtype == np.float32
    assert not np.allclose(mean, cls, atol=1e-3)


@pytest.mark.slow
def test_length_bucketing_restores_input_order_and_matches_one_by_one(minilm_encoder):
    bucketed = minilm_encoder.embed(TEXTS, batch_size=2)
    one_by_one = np.stack([minilm_encoder.embed([t], batch_size=1)[0] for t in TEXTS])

    np.testing.assert_allclose(bucketed, one_by_one, atol=1e-5)
    # Rows follow the input, not the length order: the two long texts are not adjacent in TEXTS.
    assert not np.allclose(bucketed[1], bucketed[2], atol=1e-3)


@pytest.mark.slow
def test_embed_reports_progress_and_handles_no_texts(minilm_encoder):
    calls: list[tuple[int, int]] = []

    minilm_encoder.embed(TEXTS, batch_size=2, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert minilm_encoder.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_truncation_side_and_lowercase_change_the_inputs(minilm_encoder, default_model_dir):
    long_text = "Alpha beta gamma delta. " * 20 + "THE ENDING WORDS"
    left = Encoder(
        EncoderConfig(model_dir=default_model_dir, max_length=8, truncation_side="left"),
        model=minilm_encoder.model,
    )
    right = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=8), model=minilm_encoder.model)

    left_ids = left.tokenize([long_text])["input_ids"][0]
    right_ids = right.tokenize([long_text])["input_ids"][0]

    assert len(left_ids) == len(right_ids) == 8
    assert "ending" in left.tokenizer.decode(left_ids) and "ending" not in right.tokenizer.decode(right_ids)
    assert not np.allclose(left.embed([long_text]), right.embed([long_text]), atol=1e-3)


@pytest.mark.slow
def test_token_stats_count_length_truncation_and_unknown_tokens(minilm_encoder):
    texts = ["hello world", "word " * 100, "snowman \u2603 and \ufffd broken"]

    stats = minilm_encoder.token_stats(texts)

    assert stats.n_tokens.tolist()[0] == 4  # [CLS] hello world [SEP]
    assert stats.n_tokens[1] == 102 and stats.truncated.tolist() == [False, True, False]
    assert stats.n_unknown[2] >= 1 and stats.n_unknown[0] == 0
    assert stats.n_malformed_chars.tolist() == [0, 0, 1]
    summary = stats.summary()
    assert summary["truncation_rate"] == pytest.approx(1 / 3)
    assert 0 < summary["unknown_token_rate"] < 1


@pytest.mark.slow
def test_fingerprint_depends_on_preprocessing_and_weights(minilm_encoder, default_model_dir):
    same = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=32), model=minilm_encoder.model)
    longer = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=64), model=minilm_encoder.model)
    lower = Encoder(
        EncoderConfig(model_dir=default_model_dir, max_length=32, lowercase=True), model=minilm_encoder.model
    )
    cls = Encoder(
        EncoderConfig(model_dir=default_model_dir, max_length=32, pooling="cls"), model=minilm_encoder.model
    )

    fingerprints = {e.fingerprint for e in (longer, lower, cls)}

    assert same.fingerprint == minilm_encoder.fingerprint
    assert len(fingerprints | {minilm_encoder.fingerprint}) == 4


@pytest.mark.slow
def test_fingerprint_changes_when_weights_change(default_model_dir):
    encoder = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=32))
    before = encoder.fingerprint
    with_changed = encoder.model.embeddings.word_embeddings.weight
    with_changed.data[0, 0] += 1.0

    encoder.invalidate_fingerprint()

    assert encoder.fingerprint != before


@pytest.mark.slow
def test_cache_hit_skips_the_model_and_returns_identical_arrays(minilm_encoder, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    texts = [*TEXTS, TEXTS[0]]  # a duplicate is embedded once

    calls_before = minilm_encoder.forward_calls
    first = minilm_encoder.embed_cached(texts, cache, batch_size=2)
    calls_first = minilm_encoder.forward_calls - calls_before
    second = minilm_encoder.embed_cached(texts, cache, batch_size=2)
    calls_second = minilm_encoder.forward_calls - calls_before - calls_first

    assert calls_first == 3 and calls_second == 0
    assert cache.count(minilm_encoder.fingerprint) == len(TEXTS)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, minilm_encoder.embed(texts), atol=1e-5)


@pytest.mark.slow
def test_cache_embeds_only_new_texts_and_separates_fingerprints(minilm_encoder, default_model_dir, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    minilm_encoder.embed_cached(TEXTS[:3], cache)
    cls = Encoder(
        EncoderConfig(model_dir=default_model_dir, max_length=32, pooling="cls"),
        model=minilm_encoder.model,
        tokenizer=minilm_encoder.tokenizer,
    )

    calls_before = minilm_encoder.forward_calls
    minilm_encoder.embed_cached(TEXTS, cache, batch_size=8)
    cls_vectors = cls.embed_cached(TEXTS[:3], cache)

    assert minilm_encoder.forward_calls - calls_before == 1  # one batch holding the 2 new texts
    assert cache.count(minilm_encoder.fingerprint) == 5 and cache.count(cls.fingerprint) == 3
    assert not np.allclose(cls_vectors, minilm_encoder.embed(TEXTS[:3]), atol=1e-3)


def _write_rows(path: str, worker: int) -> None:
    cache = EmbeddingCache(path)
    rng = np.random.default_rng(worker)
    for i in range(20):
        keys = [text_key(f"text {i} {j}") for j in range(10)]  # the same keys from every worker
        cache.put_many("fp", keys, rng.normal(size=(10, 8)).astype(np.float32))
        cache.get_many("fp", keys)


def test_cache_survives_concurrent_writers_and_never_overwrites(tmp_path):
    path = str(Path(tmp_path) / "cache.sqlite3")
    cache = EmbeddingCache(path)
    first = np.ones((1, 8), dtype=np.float32)
    cache.put_many("fp", [text_key("text 0 0")], first)

    ctx = multiprocessing.get_context("fork")  # the workers use only sqlite and numpy
    workers = [ctx.Process(target=_write_rows, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)

    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert cache.count("fp") == 200
    np.testing.assert_array_equal(
        cache.get_many("fp", [text_key("text 0 0")])[text_key("text 0 0")], first[0]
    )


def test_cache_rejects_mismatched_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite3")

    with pytest.raises(ValueError, match="expected 2 vectors"):
        cache.put_many("fp", ["a", "b"], np.zeros((3, 4), dtype=np.float32))
