"""Embed once (issue 15), the pure part: a predictor reads and extends the embedding cache under a key of its
encoder's fingerprint and backend, never passes one backend's vectors off as another's, and the serving
backend chooser re-measures a frozen encoder's accuracy from stored vectors."""

from __future__ import annotations

import numpy as np
import pytest

from training.artifacts import Predictor, embedding_key
from training.embedding_cache import EmbeddingCache
from training.encoder import EncoderConfig
from training.serving import TIMING_SAMPLE, choose_serving_backend
from training.train import TrainConfig, TrainedModel, train_classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tiny_dataset, default_model_dir) -> TrainedModel:
    config = TrainConfig(mode="frozen", encoder=EncoderConfig(model_dir=default_model_dir, max_length=32))
    return train_classifier(tiny_dataset.train_texts, tiny_dataset.train_labels, tiny_dataset.label_names,
                            config=config, val_texts=tiny_dataset.val_texts, val_labels=tiny_dataset.val_labels)


def test_a_predictor_embeds_each_text_once_and_predicts_the_same_from_stored_vectors(model, tiny_dataset, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    predictor = Predictor.from_trained(model)
    texts = tiny_dataset.val_texts
    before = predictor.encoder.texts_embedded

    first = predictor.predict(texts, cache=cache, with_token_stats=False)
    second = predictor.predict(texts, cache=cache, with_token_stats=False)

    assert predictor.encoder.texts_embedded - before == len(set(texts))
    assert cache.count(predictor.embedding_key) == len(set(texts))
    np.testing.assert_allclose(second.probs, first.probs, atol=1e-6)
    assert second.labels == first.labels


def test_int8_vectors_are_filed_apart_and_fp32_ones_are_read_for_them(model, tiny_dataset, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    fp32 = Predictor.from_trained(model)
    int8 = Predictor.from_trained(model, backend="torch_int8")
    texts = tiny_dataset.val_texts
    assert int8.embedding_key == embedding_key(fp32.encoder.fingerprint, "torch_int8") != fp32.embedding_key

    # An INT8 pass stores its vectors under its own key, never under fp32's
    int8.predict(texts[:3], cache=cache, with_token_stats=False)
    assert cache.count(int8.embedding_key) == 3 and cache.count(fp32.embedding_key) == 0

    # and texts fp32 has embedded are read from fp32's entries, not embedded again nor copied
    fp32.predict(texts[3:], cache=cache, with_token_stats=False)
    before = int8.encoder.texts_embedded
    int8.predict(texts, cache=cache, with_token_stats=False)
    assert int8.encoder.texts_embedded == before
    assert cache.count(int8.embedding_key) == 3


def test_a_changed_fingerprint_embeds_everything_again(default_model_dir, tiny_dataset, tmp_path):
    from training.encoder import Encoder

    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    texts = tiny_dataset.val_texts
    old = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=32))
    new = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=24))
    old.embed_cached(texts, cache)

    new.embed_cached(texts, cache)

    assert new.fingerprint != old.fingerprint
    assert new.texts_embedded == len(set(texts))


def test_the_backend_chooser_reads_stored_vectors_and_times_a_sample(model, tiny_dataset, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    predictor = Predictor.from_trained(model)
    texts, labels = tiny_dataset.val_texts * 10, tiny_dataset.val_labels * 10
    texts = [f"{text} ({i})" for i, text in enumerate(texts)]  # unique, so nothing is read twice
    backends = ("torch_fp32", "torch_int8")

    first = choose_serving_backend(predictor, texts, labels, tolerance=1.0, backends=backends, cache=cache)
    before = predictor.encoder.texts_embedded
    second = choose_serving_backend(predictor, texts, labels, tolerance=1.0, backends=backends, cache=cache)

    # The second choice embedded only the warm-up batches and the timing samples, not the texts again
    assert predictor.encoder.texts_embedded - before == len(backends) * (32 + min(TIMING_SAMPLE, len(texts)))
    for backend in backends:
        assert second["results"][backend]["macro_f1"] == pytest.approx(first["results"][backend]["macro_f1"])
        assert second["results"][backend]["texts_per_second"] > 0
