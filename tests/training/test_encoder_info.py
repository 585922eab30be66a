"""training.encoder_info: an encoder directory checked and described without loading its weights; and an Encoder
built from another directory, pooling or length embeds afresh (its fingerprint is the cache's key)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_bert import WORDS, parameter_count, tiny_bert
from training import encoder_info
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder, EncoderConfig
from training.encoder_info import EncoderDirectoryError, inspect_encoder

TEXTS = [f"the team {w} again" for w in WORDS[:12]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_the_figures_of_a_tiny_bert(tiny: Path) -> None:
    info = inspect_encoder(tiny)

    assert (info.model_type, info.hidden_size, info.num_layers) == ("bert", 32, 2)
    assert (info.max_positions, info.max_tokens, info.vocab_size) == (64, 64, 45)
    assert info.num_parameters == parameter_count(tiny)


def test_the_bundled_minilm(default_model_dir: str) -> None:
    info = inspect_encoder(default_model_dir)

    assert (info.hidden_size, info.num_layers, info.max_positions) == (384, 6, 512)
    assert info.num_parameters == sum(p.numel() for p in Encoder(EncoderConfig(model_dir=default_model_dir))
                                      .model.parameters())


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"weights": False}, "no weights"),
    ({"tokenizer": False}, "no tokenizer files"),
])
def test_a_directory_missing_a_part_is_refused_with_the_reason(tmp_path: Path, kwargs: dict, reason: str) -> None:
    directory = tiny_bert(tmp_path / "model", **kwargs)

    with pytest.raises(EncoderDirectoryError, match=reason):
        inspect_encoder(directory)


def test_no_directory_or_no_config(tmp_path: Path) -> None:
    with pytest.raises(EncoderDirectoryError, match="does not exist"):
        inspect_encoder(tmp_path / "absent")
    with pytest.raises(EncoderDirectoryError, match="no config.json"):
        inspect_encoder(tmp_path)


def test_a_broken_config_or_weight_file_is_refused_without_the_path(tmp_path: Path) -> None:
    directory = tiny_bert(tmp_path / "model")
    (directory / "config.json").write_text("{not json")

    with pytest.raises(EncoderDirectoryError, match="config.json does not load") as caught:
        inspect_encoder(directory)
    assert str(directory) not in str(caught.value)

    other = tiny_bert(tmp_path / "other")
    (other / "model.safetensors").write_bytes(b"\xff" * 8 + b"garbage")
    with pytest.raises(EncoderDirectoryError, match="not a readable safetensors file"):
        inspect_encoder(other)


def test_an_unknown_model_type_is_refused(tmp_path: Path) -> None:
    directory = tiny_bert(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert-like-nothing"}))

    with pytest.raises(EncoderDirectoryError, match="config.json does not load"):
        inspect_encoder(directory)


def test_a_config_automodel_has_no_class_for_is_refused(tmp_path: Path) -> None:
    # Given an encoder-decoder config (transformers knows it, but AutoModel builds no plain encoder from it)
    directory = tiny_bert(tmp_path / "model")
    bert = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(
        {"model_type": "encoder-decoder", "encoder": bert, "decoder": {**bert, "is_decoder": True}}))

    with pytest.raises(EncoderDirectoryError, match="model type 'encoder-decoder' has no encoder class"):
        inspect_encoder(directory)


def test_sharded_weights_are_counted_and_a_missing_shard_named(tmp_path: Path) -> None:
    directory = tiny_bert(tmp_path / "model")
    expected = parameter_count(directory)
    (directory / "model.safetensors").rename(directory / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "model-00001-of-00001.safetensors"}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))

    assert inspect_encoder(directory).num_parameters == expected

    (directory / "model-00001-of-00001.safetensors").unlink()
    with pytest.raises(EncoderDirectoryError, match="missing: model-00001-of-00001.safetensors"):
        inspect_encoder(directory)


def test_roberta_style_positions_leave_the_padding_offset_out(tmp_path: Path) -> None:
    directory = tiny_bert(tmp_path / "model", max_positions=66)
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="roberta", architectures=["RobertaModel"], pad_token_id=1)
    (directory / "config.json").write_text(json.dumps(config))

    info = inspect_encoder(directory)

    assert (info.model_type, info.max_positions, info.max_tokens) == ("roberta", 66, 64)


def test_answers_are_cached_until_the_directory_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tiny_bert(tmp_path / "model")
    calls = []
    real = encoder_info._inspect
    monkeypatch.setattr(encoder_info, "_inspect", lambda *args: calls.append(1) or real(*args))

    inspect_encoder(directory)
    inspect_encoder(directory)
    assert len(calls) == 1

    (directory / "model.safetensors").unlink()
    with pytest.raises(EncoderDirectoryError, match="no weights"):
        inspect_encoder(directory)
    assert len(calls) == 2


def test_another_encoder_pooling_or_length_embeds_afresh(tiny: Path, tmp_path: Path) -> None:
    # Given texts embedded and cached with the tiny encoder (mean pooling, 32 tokens)
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    first = Encoder(EncoderConfig(model_dir=str(tiny), max_length=32))
    first.embed_cached(TEXTS, cache)
    assert cache.count(first.fingerprint) == len(TEXTS)

    # When the same texts go through encoders that differ in weights, pooling or length
    others = [
        Encoder(EncoderConfig(model_dir=str(tiny_bert(tmp_path / "other", seed=1)), max_length=32)),
        Encoder(EncoderConfig(model_dir=str(tiny), max_length=32, pooling="cls")),
        Encoder(EncoderConfig(model_dir=str(tiny), max_length=16)),
    ]
    for other in others:
        vectors = other.embed_cached(TEXTS, cache)

        # Then none reuses the first one's vectors: each runs its model and fills its own fingerprint
        assert other.fingerprint != first.fingerprint
        assert other.forward_calls > 0 and cache.count(other.fingerprint) == len(TEXTS)
        assert vectors.shape == (len(TEXTS), 32)

    # and the same encoder again hits its cache
    again = Encoder(EncoderConfig(model_dir=str(tiny), max_length=32))
    again.embed_cached(TEXTS, cache)
    assert again.forward_calls == 0
