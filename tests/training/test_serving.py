from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import artifacts, serving
from training.artifacts import Predictor, load_artifact, save_artifact
from training.backends import BACKENDS, build_runner, export_onnx, quantize_int8
from training.encoder import EncoderConfig
from training.serving import choose_serving_backend, pick_backend
from training.train import TrainConfig, TrainedModel, train_classifier

TEXTS = [
    "The goalkeeper saved a penalty in the last minute.",
    "Bake the bread for forty minutes.",
    "The laptop update broke the wifi driver and the battery now drains twice as fast as before.",
    "ok",
]


@pytest.fixture(scope="module")
def model(tiny_dataset, default_model_dir) -> TrainedModel:
    config = TrainConfig(mode="frozen", encoder=EncoderConfig(model_dir=default_model_dir, max_length=32))
    return train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=config,
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )


@pytest.fixture(scope="module")
def fp32(model) -> Predictor:
    return Predictor.from_trained(model)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_torch_int8_stays_close_to_fp32_but_is_not_identical(fp32):
    runner = build_runner(fp32.encoder, "torch_int8")

    int8 = fp32.encoder.embed(TEXTS, runner=runner)
    reference = fp32.embed(TEXTS)

    assert not np.allclose(int8, reference, atol=1e-4)  # quantization visibly changes embeddings
    assert np.all(_cosine(int8, reference) > 0.85)


@pytest.mark.slow
def test_quantization_replaces_linear_layers_in_a_copy(fp32):
    before = fp32.embed(TEXTS)

    quantized = quantize_int8(fp32.encoder.pooled_module())

    kinds = {type(m).__module__ for m in quantized.modules()}
    assert any(k.startswith("torch.ao.nn.quantized.dynamic") for k in kinds)
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    np.testing.assert_array_equal(fp32.embed(TEXTS), before)


@pytest.mark.slow
def test_onnx_fp32_matches_pytorch_across_batch_shapes(fp32, tmp_path):
    path = export_onnx(fp32.encoder, tmp_path / "encoder.onnx")
    runner = build_runner(fp32.encoder, "onnx_fp32", onnx_path=path)

    for batch_size in (1, 3):
        onnx = fp32.encoder.embed(TEXTS, batch_size=batch_size, runner=runner)
        np.testing.assert_allclose(onnx, fp32.embed(TEXTS), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch_int8", "onnx_fp32", "onnx_int8"])
def test_every_backend_gives_probabilities_close_to_fp32(model, fp32, backend):
    predictor = Predictor.from_trained(model, backend=backend)

    probs = predictor.predict(TEXTS).probs

    np.testing.assert_allclose(probs, fp32.predict(TEXTS).probs, atol=0.1)
    assert predictor.backend == backend


@pytest.fixture(scope="module")
def record(fp32, tiny_dataset) -> dict:
    return choose_serving_backend(
        fp32, tiny_dataset.val_texts, tiny_dataset.val_labels, tolerance=1.0, min_timing_texts=8
    )


@pytest.mark.slow
def test_chooser_picks_the_fastest_backend_that_keeps_accuracy(record):
    results = record["results"]

    fastest = max(results, key=lambda b: results[b]["texts_per_second"])
    assert set(results) == set(BACKENDS)
    assert record["backend"] == fastest  # tolerance 1.0 lets every backend qualify
    assert all(r["qualifies"] for r in results.values())
    assert results["torch_fp32"]["max_abs_prob_diff"] == 0.0
    assert 0 < results["torch_int8"]["max_abs_prob_diff"] < 0.2
    for r in results.values():
        assert 0.0 <= r["macro_f1"] <= 1.0 and r["texts_per_second"] > 0
    json.dumps(record)  # stored as serving.json


@pytest.mark.slow
def test_chooser_keeps_fp32_when_the_tolerance_cannot_be_met(record):
    assert pick_backend(record["results"], tolerance=-1.0) == "torch_fp32"


def test_pick_backend_prefers_speed_only_within_the_tolerance():
    results = {
        "torch_fp32": {"available": True, "macro_f1": 0.90, "accuracy": 0.92, "texts_per_second": 100.0},
        "torch_int8": {"available": True, "macro_f1": 0.895, "accuracy": 0.92, "texts_per_second": 150.0},
        "onnx_int8": {"available": True, "macro_f1": 0.85, "accuracy": 0.91, "texts_per_second": 400.0},
        "onnx_fp32": {"available": False, "reason": "onnxruntime is not installed"},
    }

    assert pick_backend(results, 0.01) == "torch_int8"
    assert pick_backend(results, 0.06) == "onnx_int8"
    assert pick_backend(results, 0.0) == "torch_fp32"
    slow_int8 = {**results, "torch_int8": {**results["torch_int8"], "texts_per_second": 50.0}}
    assert pick_backend(slow_int8, 0.01) == "torch_fp32"  # accurate enough but not faster


@pytest.mark.slow
def test_chooser_skips_onnx_without_onnxruntime(fp32, tiny_dataset, monkeypatch):
    monkeypatch.setattr(serving, "onnxruntime_available", lambda: False)

    record = choose_serving_backend(
        fp32, tiny_dataset.val_texts, tiny_dataset.val_labels, tolerance=1.0, min_timing_texts=8
    )

    assert record["results"]["onnx_int8"] == {"available": False, "reason": "onnxruntime is not installed"}
    assert record["backend"] in {"torch_fp32", "torch_int8"}


@pytest.mark.slow
def test_a_version_serves_with_its_recorded_backend(model, fp32, tmp_path, monkeypatch):
    record = {"backend": "onnx_int8", "results": {}, "tolerance": 0.01}
    save_artifact(model, tmp_path / "v1", metrics={}, extra={}, serving=record)

    loaded = load_artifact(tmp_path / "v1")
    monkeypatch.setattr(artifacts, "onnxruntime_available", lambda: False)
    fallback = load_artifact(tmp_path / "v1")

    assert (tmp_path / "v1" / "encoder.int8.onnx").is_file()
    assert not (tmp_path / "v1" / "encoder.onnx").exists()
    assert loaded.backend == "onnx_int8" and loaded.metadata["serving"]["backend"] == "onnx_int8"
    assert fallback.backend == "torch_fp32"
    np.testing.assert_allclose(loaded.predict(TEXTS).probs, fp32.predict(TEXTS).probs, atol=0.1)
    np.testing.assert_allclose(fallback.predict(TEXTS).probs, fp32.predict(TEXTS).probs, atol=1e-6)


@pytest.mark.slow
def test_unknown_backends_are_rejected(fp32):
    with pytest.raises(ValueError, match="backend"):
        build_runner(fp32.encoder, "tpu")
    with pytest.raises(ValueError, match="unknown backends"):
        choose_serving_backend(fp32, ["a"], ["sports"], backends=["torch_fp32", "tpu"])
