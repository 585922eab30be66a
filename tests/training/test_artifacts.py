from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from training.artifacts import (
    ArtifactIntegrityError,
    Predictor,
    load_artifact,
    save_artifact,
    verify_artifact,
)
from training.encoder import Encoder, EncoderConfig
from training.train import TrainConfig, TrainedModel, train_classifier

LONG_TEXT = "The striker scored twice in the final match and the crowd sang for an hour afterwards. " * 4


@pytest.fixture(scope="module")
def fine_tuned(tiny_dataset, default_model_dir) -> TrainedModel:
    config = TrainConfig(
        mode="full",
        encoder=EncoderConfig(model_dir=default_model_dir, max_length=32),
        epochs=1,
        batch_size=8,
    )
    return train_classifier(
        tiny_dataset.train_texts[::2],
        tiny_dataset.train_labels[::2],
        tiny_dataset.label_names,
        config=config,
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )


@pytest.fixture(scope="module")
def saved(fine_tuned, tmp_path_factory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("versions") / "v1"
    content_hash = save_artifact(
        fine_tuned, directory, metrics={"ece": 0.05}, extra={"annotation_snapshot": [1, 2, 3]}
    )
    return directory, content_hash


def _writable_copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.slow
def test_saved_version_holds_every_file_with_its_hash(saved):
    directory, content_hash = saved

    manifest = json.loads((directory / "manifest.json").read_text())
    names = set(manifest["files"])
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessing.json",
        "labels.json",
        "calibration.json",
        "metrics.json",
        "training_config.json",
        "training_log.json",
        "extra.json",
    } <= names
    assert manifest["content_hash"] == content_hash == verify_artifact(directory)["content_hash"]
    assert json.loads((directory / "preprocessing.json").read_text()) == {
        "max_length": 32,
        "truncation_side": "right",
        "pooling": "mean",
        "lowercase": False,
    }
    assert not [p for p in directory.parent.iterdir() if p.name.endswith(".partial")]
    assert all(stat.S_IMODE((directory / name).stat().st_mode) == 0o444 for name in [*names, "manifest.json"])


@pytest.mark.slow
def test_round_trip_gives_identical_predictions(saved, fine_tuned, tiny_dataset):
    directory, content_hash = saved

    predictor = load_artifact(directory)
    prediction = predictor.predict(tiny_dataset.texts)

    np.testing.assert_allclose(prediction.probs, fine_tuned.predict_proba(tiny_dataset.texts), atol=1e-6)
    np.testing.assert_allclose(prediction.embeddings, fine_tuned.embed(tiny_dataset.texts), atol=1e-6)
    assert prediction.labels == [fine_tuned.label_names[i] for i in fine_tuned.predict(tiny_dataset.texts)]
    assert predictor.backend == "torch_fp32" and predictor.content_hash == content_hash
    assert predictor.metadata["metrics"]["ece"] == 0.05
    assert predictor.metadata["metrics"]["validation"]["macro_f1"] == fine_tuned.val_metrics["macro_f1"]
    assert predictor.metadata["extra"] == {"annotation_snapshot": [1, 2, 3]}
    assert prediction.token_stats is not None and prediction.token_stats.n_tokens.shape == (
        len(tiny_dataset.texts),
    )


@pytest.mark.slow
def test_existing_versions_are_never_overwritten(saved, fine_tuned):
    directory, _ = saved
    before = (directory / "manifest.json").read_bytes()

    with pytest.raises(FileExistsError):
        save_artifact(fine_tuned, directory, metrics={}, extra={})

    assert (directory / "manifest.json").read_bytes() == before


@pytest.mark.slow
def test_a_flipped_byte_in_the_weights_is_refused(saved, tmp_path):
    copy = _writable_copy(saved[0], tmp_path / "v1")
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(weights))

    with pytest.raises(ArtifactIntegrityError, match="model.safetensors"):
        load_artifact(copy)


@pytest.mark.slow
def test_edited_preprocessing_is_refused(saved, tmp_path):
    copy = _writable_copy(saved[0], tmp_path / "v1")
    preprocessing = json.loads((copy / "preprocessing.json").read_text())
    (copy / "preprocessing.json").write_text(json.dumps({**preprocessing, "max_length": 256}))

    with pytest.raises(ArtifactIntegrityError, match="preprocessing.json"):
        load_artifact(copy)


@pytest.mark.slow
def test_missing_or_extra_files_are_refused(saved, tmp_path):
    missing = _writable_copy(saved[0], tmp_path / "missing")
    (missing / "calibration.json").unlink()
    extra = _writable_copy(saved[0], tmp_path / "extra")
    (extra / "notes.txt").write_text("added later")
    no_manifest = _writable_copy(saved[0], tmp_path / "no_manifest")
    (no_manifest / "manifest.json").unlink()

    for directory, message in (
        (missing, "calibration.json"),
        (extra, "notes.txt"),
        (no_manifest, "manifest"),
    ):
        with pytest.raises(ArtifactIntegrityError, match=message):
            load_artifact(directory)


@pytest.mark.slow
def test_stored_preprocessing_is_applied_at_load_time(tiny_dataset, default_model_dir, tmp_path):
    config = TrainConfig(
        mode="frozen", encoder=EncoderConfig(model_dir=default_model_dir, max_length=16), frozen_epochs=5
    )
    model = train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=config,
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )
    save_artifact(model, tmp_path / "v16", metrics={}, extra={})

    predictor = load_artifact(tmp_path / "v16")
    prediction = predictor.predict([LONG_TEXT])

    assert predictor.preprocessing["max_length"] == 16
    assert prediction.token_stats is not None and prediction.token_stats.truncated.tolist() == [True]
    at_16 = Encoder(EncoderConfig(model_dir=default_model_dir, max_length=16)).embed([LONG_TEXT])
    at_default = Encoder(EncoderConfig(model_dir=default_model_dir)).embed([LONG_TEXT])
    np.testing.assert_allclose(prediction.embeddings, at_16, atol=1e-5)
    assert not np.allclose(prediction.embeddings, at_default, atol=1e-3)


@pytest.mark.slow
def test_stored_temperature_calibrates_probabilities(fine_tuned, tiny_dataset, tmp_path):
    hot = replace(fine_tuned, temperature=2.5)
    save_artifact(hot, tmp_path / "hot", metrics={}, extra={})

    prediction = load_artifact(tmp_path / "hot").predict(tiny_dataset.val_texts)

    np.testing.assert_allclose(prediction.probs, softmax(prediction.logits / 2.5, axis=1), atol=1e-6)
    np.testing.assert_allclose(
        prediction.logits, fine_tuned.predict_logits(tiny_dataset.val_texts), atol=1e-5
    )


@pytest.mark.slow
def test_multilabel_versions_keep_their_thresholds(tiny_multilabel_dataset, default_model_dir, tmp_path):
    data = tiny_multilabel_dataset
    model = train_classifier(
        data.train_texts,
        data.train_labels,
        data.label_names,
        task="multi_label",
        config=TrainConfig(mode="frozen", encoder=EncoderConfig(model_dir=default_model_dir, max_length=32)),
        val_texts=data.val_texts,
        val_labels=data.val_labels,
    )
    model.thresholds = [0.3, 0.5, 0.7]
    save_artifact(model, tmp_path / "multi", metrics={}, extra={})

    predictor = load_artifact(tmp_path / "multi")
    prediction = predictor.predict(data.val_texts)

    assert predictor.thresholds == [0.3, 0.5, 0.7] and predictor.task == "multi_label"
    expected = model.predict_proba(data.val_texts) >= np.array([0.3, 0.5, 0.7])
    np.testing.assert_array_equal(prediction.predicted, expected)
    assert prediction.labels == [[data.label_names[j] for j in np.flatnonzero(row)] for row in expected]


@pytest.mark.slow
def test_a_failed_save_leaves_no_directory(fine_tuned, tmp_path):
    with pytest.raises(ValueError, match="serving"):
        save_artifact(fine_tuned, tmp_path / "bad", metrics={}, extra={}, serving={"backend": "gpu_magic"})

    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_in_memory_predictor_matches_the_trained_model(fine_tuned, tiny_dataset):
    prediction = Predictor.from_trained(fine_tuned).predict(tiny_dataset.val_texts, with_token_stats=False)

    np.testing.assert_allclose(
        prediction.logits, fine_tuned.predict_logits(tiny_dataset.val_texts), atol=1e-6
    )
    assert prediction.token_stats is None
