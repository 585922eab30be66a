from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.embedding_cache import EmbeddingCache
from training.encoder import EncoderConfig
from training.train import (
    TrainConfig,
    TrainedModel,
    TrainingCancelled,
    calibrate,
    crossfit_folds,
    train_classifier,
    train_seeds,
    tune_thresholds,
)


@pytest.fixture(scope="module")
def small_config(default_model_dir) -> TrainConfig:
    return TrainConfig(
        encoder=EncoderConfig(model_dir=default_model_dir, max_length=32),
        epochs=3,
        batch_size=8,
        head_lr=2e-3,
        encoder_lr=5e-5,
        linear_probe=False,  # the fine-tuning mechanics alone; the probe has its own tests below
    )


@pytest.fixture(scope="module")
def full_run(tiny_dataset, small_config) -> tuple[TrainedModel, list[tuple[float, str, str]]]:
    events: list[tuple[float, str, str]] = []
    model = train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=replace(small_config, mode="full", patience=5),
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
        progress=lambda f, stage, msg: events.append((f, stage, msg)),
    )
    return model, events


def _lrs(model: TrainedModel, phase: str | None = None) -> list[float]:
    return [s["lr_head"] for s in model.step_log if phase is None or s["phase"] == phase]


def _assert_warmup_then_decay(lrs: list[float], peak: float) -> None:
    top = int(np.argmax(lrs))
    n = len(lrs)
    assert lrs[0] == 0.0
    assert 1 <= top <= max(1, int(np.ceil(0.1 * n)))  # warm-up over ~10% of the steps
    assert np.all(np.diff(lrs[: top + 1]) > 0)  # linear rise ...
    assert np.allclose(np.diff(lrs[: top + 1]), lrs[1] - lrs[0])
    assert np.all(np.diff(lrs[top:]) < 0)  # ... then linear decay
    assert lrs[top] == pytest.approx(peak)
    assert lrs[-1] <= peak / (n - top) + 1e-12  # one step before 0


@pytest.mark.slow
def test_full_fine_tune_lowers_the_loss_and_learns_the_task(full_run, tiny_dataset):
    model, _ = full_run

    first, last = model.epoch_log[0]["train_loss"], model.epoch_log[-1]["train_loss"]
    assert last < first
    assert model.mode == "full"
    assert model.val_metrics["macro_f1"] >= 0.6
    assert model.predict_proba(tiny_dataset.val_texts).shape == (len(tiny_dataset.val_texts), 3)


@pytest.mark.slow
def test_full_fine_tune_logs_every_step(full_run):
    model, _ = full_run

    assert [s["step"] for s in model.step_log] == list(range(12))  # 27 texts / batch 8 -> 4 steps x 3 epochs
    for entry in model.step_log:
        assert {"step", "phase", "epoch", "loss", "grad_norm", "lr", "lr_head", "lr_encoder"} <= set(entry)
        assert entry["grad_norm"] > 0 and np.isfinite(entry["loss"])
        assert set(entry["lr"]) == {"embeddings", *(f"layer.{i}" for i in range(6)), "head"}


@pytest.mark.slow
def test_learning_rate_warms_up_linearly_then_decays_to_zero(full_run, small_config):
    model, _ = full_run

    _assert_warmup_then_decay(_lrs(model), small_config.head_lr)
    encoder_lrs = [s["lr_encoder"] for s in model.step_log]
    assert max(encoder_lrs) == pytest.approx(small_config.encoder_lr)


@pytest.mark.slow
def test_biases_and_layernorm_weights_get_no_weight_decay(full_run, small_config):
    model, _ = full_run

    seen: set[str] = set()
    for group in model.optimizer_groups:
        for name in group["params"]:
            seen.add(name)
            exempt = name.endswith("bias") or "LayerNorm" in name
            assert group["weight_decay"] == (0.0 if exempt else small_config.weight_decay), name
    assert "head.weight" in seen and "encoder.embeddings.LayerNorm.weight" in seen
    assert "encoder.encoder.layer.5.attention.self.query.weight" in seen


@pytest.mark.slow
def test_progress_is_monotone_between_zero_and_one(full_run):
    _, events = full_run

    fractions = [f for f, _, _ in events]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False))
    assert {"training", "evaluating", "done"} <= {stage for _, stage, _ in events}


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch(full_run):
    model, _ = full_run

    scores = [e["val_macro_f1"] for e in model.epoch_log]
    losses = [e["val_loss"] for e in model.epoch_log]
    # Highest validation macro-F1; among equal scores the lowest validation loss.
    best = max(range(len(scores)), key=lambda i: (scores[i], -losses[i]))
    assert model.best_epoch == best + 1
    assert model.val_metrics["macro_f1"] == pytest.approx(scores[best])


@pytest.mark.slow
def test_gradual_unfreezing_restarts_the_schedule_per_phase(tiny_dataset, small_config):
    model = train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=replace(small_config, mode="gradual", epochs=4, unfreeze_layers_per_phase=3, batch_size=4),
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )

    phases = list(dict.fromkeys(s["phase"] for s in model.step_log))
    assert phases == ["head", "top3", "all"]
    for phase in phases:
        _assert_warmup_then_decay(_lrs(model, phase), small_config.head_lr)
    trainable = {
        phase: {n for g in model.optimizer_groups if g["phase"] == phase for n in g["params"]}
        for phase in phases
    }
    assert trainable["head"] == {"head.weight", "head.bias"}
    assert any(".layer.5." in n for n in trainable["top3"]) and not any(
        ".layer.2." in n for n in trainable["top3"]
    )
    assert any("embeddings" in n for n in trainable["all"])


@pytest.mark.slow
def test_gradual_mode_decays_learning_rates_layer_by_layer(tiny_dataset, small_config):
    model = train_classifier(
        tiny_dataset.train_texts[:12],
        tiny_dataset.train_labels[:12],
        tiny_dataset.label_names,
        config=replace(
            small_config, mode="gradual", epochs=2, unfreeze_layers_per_phase=6, layer_lr_decay=0.8
        ),
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )

    peaks = {g["name"]: g["lr"] for g in model.optimizer_groups if g["phase"] == "all"}
    for depth, layer in enumerate(range(5, -1, -1)):
        assert peaks[f"layer.{layer}"] == pytest.approx(small_config.encoder_lr * 0.8**depth)
    assert peaks["embeddings"] == pytest.approx(small_config.encoder_lr * 0.8**6)
    assert peaks["head"] == small_config.head_lr


@pytest.mark.slow
def test_lora_trains_only_adapters_and_head_and_merges_them(tiny_dataset, small_config):
    model = train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=replace(small_config, mode="lora", epochs=2),
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )

    assert model.trainable_parameters
    assert all("lora_" in n or n.startswith("head.") for n in model.trainable_parameters)
    assert any("query.lora_A" in n for n in model.trainable_parameters)
    assert any("value.lora_B" in n for n in model.trainable_parameters)
    assert not any("lora" in n for n in model.classifier.state_dict())  # merged into plain weights
    assert model.step_log[-1]["lr"].keys() == {"lora", "head"}
    assert model.predict_logits(tiny_dataset.val_texts).shape == (len(tiny_dataset.val_texts), 3)


@pytest.mark.slow
def test_frozen_mode_trains_the_head_on_cached_embeddings(tiny_dataset, small_config, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite3")
    config = replace(small_config, mode="frozen")
    args = (tiny_dataset.train_texts, tiny_dataset.train_labels, tiny_dataset.label_names)
    kwargs = {"val_texts": tiny_dataset.val_texts, "val_labels": tiny_dataset.val_labels, "cache": cache}

    first = train_classifier(*args, config=config, **kwargs)
    second = train_classifier(*args, config=config, **kwargs)

    assert first.encoder.forward_calls > 0
    assert second.encoder.forward_calls == 1  # only the final validation pass, no training embeddings
    assert first.trainable_parameters == ["head.bias", "head.weight"]
    assert first.val_metrics["macro_f1"] >= 0.8
    np.testing.assert_allclose(
        first.predict_logits(tiny_dataset.val_texts), second.predict_logits(tiny_dataset.val_texts), atol=1e-6
    )


def test_crossfit_folds_only_where_early_stopping_is_noisy():
    config = TrainConfig(frozen_heads=5, frozen_crossfit_below=2000)

    folds = crossfit_folds(np.arange(60) % 3, config)

    assert len(folds) == 5
    held = np.sort(np.concatenate([stop for _, stop in folds]))
    np.testing.assert_array_equal(held, np.arange(60))  # every example stops one head, once
    for fit, stop in folds:
        assert not set(fit) & set(stop) and len(stop) == 12
    assert len(crossfit_folds(np.arange(25) % 3, config)) == 2  # at least 10 examples per fold
    assert crossfit_folds(np.arange(19) % 3, config) == []  # too few for two folds: one head
    assert crossfit_folds(np.arange(60) % 3, replace(config, frozen_heads=1)) == []
    assert crossfit_folds(np.arange(2000) % 3, config) == []  # enough data: early stopping is not noisy
    multi = np.eye(3, dtype=np.float32)[np.arange(30) % 3]
    assert len(crossfit_folds(multi, config)) == 3


@pytest.mark.slow
def test_frozen_head_with_few_labels_is_the_mean_of_crossfit_heads(tiny_dataset, small_config, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite3")
    args = (tiny_dataset.train_texts, tiny_dataset.train_labels, tiny_dataset.label_names)
    kwargs = {"val_texts": tiny_dataset.val_texts, "val_labels": tiny_dataset.val_labels, "cache": cache}

    crossfit = train_classifier(*args, config=replace(small_config, mode="frozen", frozen_heads=2), **kwargs)
    again = train_classifier(*args, config=replace(small_config, mode="frozen", frozen_heads=2), **kwargs)
    single = train_classifier(*args, config=replace(small_config, mode="frozen", frozen_heads=1), **kwargs)

    assert {entry["head"] for entry in crossfit.epoch_log} == {0, 1}  # 27 training texts: two folds
    assert all("head" not in entry for entry in single.epoch_log)
    assert crossfit.val_metrics["macro_f1"] >= 0.8
    np.testing.assert_allclose(  # deterministic for a seed
        crossfit.predict_logits(tiny_dataset.val_texts), again.predict_logits(tiny_dataset.val_texts), atol=1e-6
    )
    assert not np.allclose(
        crossfit.predict_logits(tiny_dataset.val_texts), single.predict_logits(tiny_dataset.val_texts), atol=1e-3
    )


@pytest.mark.slow
def test_training_without_validation_data_holds_out_a_stratified_split(tiny_dataset, small_config):
    model = train_classifier(
        tiny_dataset.texts,
        tiny_dataset.labels,
        tiny_dataset.label_names,
        config=replace(small_config, mode="frozen", frozen_epochs=5),
    )

    assert model.val_source == "split"
    assert model.val_metrics["n_val"] == 6  # round(0.15 * 12) = 2 per class


@pytest.mark.slow
def test_multilabel_training_tunes_thresholds(tiny_multilabel_dataset, small_config):
    data = tiny_multilabel_dataset

    model = train_classifier(
        data.train_texts,
        data.train_labels,
        data.label_names,
        task="multi_label",
        config=replace(small_config, mode="frozen"),
        val_texts=data.val_texts,
        val_labels=data.val_labels,
    )

    assert model.thresholds is not None and len(model.thresholds) == 3
    assert all(0.0 < t < 1.0 for t in model.thresholds)
    probs = model.predict_proba(data.val_texts)
    assert probs.shape == (len(data.val_texts), 3) and not np.allclose(probs.sum(axis=1), 1.0)
    assert model.predict(data.val_texts).dtype == bool
    assert model.val_metrics["macro_f1"] >= 0.5


@pytest.mark.slow
def test_calibrate_tunes_multilabel_thresholds_on_the_calibrated_probabilities(tiny_multilabel_dataset, small_config):
    from training.heads import encode_labels, probabilities

    data = tiny_multilabel_dataset
    model = train_classifier(data.train_texts, data.train_labels, data.label_names, task="multi_label",
                             config=replace(small_config, mode="frozen"), val_texts=data.val_texts,
                             val_labels=data.val_labels)
    logits = model.predict_logits(data.val_texts)

    report, tuned = calibrate(model, logits, data.val_labels)

    assert model.temperature == report.temperature and report.n == len(data.val_texts)
    calibrated = probabilities(logits, "multi_label", model.temperature)
    best = tune_thresholds(encode_labels(data.val_labels, data.label_names, "multi_label"), calibrated)
    # The F1-best cuts on the calibrated probabilities, moved off the scores: the same decisions on these rows
    assert np.array_equal(calibrated >= np.array(tuned), calibrated >= np.array(best))
    # and what the model (and an artifact of it) decides is the calibrated probability against the threshold.
    assert np.array_equal(model.predict(data.val_texts), calibrated >= np.array(tuned))


@pytest.mark.slow
def test_cancel_stops_training_promptly(tiny_dataset, small_config):
    polls = 0

    def should_cancel() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    with pytest.raises(TrainingCancelled):
        train_classifier(
            tiny_dataset.train_texts,
            tiny_dataset.train_labels,
            tiny_dataset.label_names,
            config=replace(small_config, mode="full"),
            val_texts=tiny_dataset.val_texts,
            val_labels=tiny_dataset.val_labels,
            should_cancel=should_cancel,
        )
    assert polls == 4


@pytest.mark.slow
def test_same_seed_gives_the_same_model_and_seeds_are_summarized(tiny_dataset, small_config):
    config = replace(small_config, mode="frozen", frozen_epochs=10)
    data = (tiny_dataset.train_texts, tiny_dataset.train_labels, tiny_dataset.label_names)
    val = {"val_texts": tiny_dataset.val_texts, "val_labels": tiny_dataset.val_labels}

    runs = train_seeds(*data, seeds=[0, 1, 0], config=config, **val, keep_models=True)

    assert runs.seeds == [0, 1, 0] and len(runs.macro_f1) == 3 and runs.mode == "frozen"
    assert runs.mean == pytest.approx(np.mean(runs.macro_f1))
    assert runs.std == pytest.approx(np.std(runs.macro_f1, ddof=1))
    same = [m.predict_logits(tiny_dataset.val_texts) for m in (runs.models[0], runs.models[2])]
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(runs.models[1].predict_logits(tiny_dataset.val_texts), same[0])


def test_auto_mode_follows_the_labeled_set_size(default_model_dir):
    config = TrainConfig(encoder=EncoderConfig(model_dir=default_model_dir))

    assert [config.resolve_mode(n) for n in (10, 499, 500, 10_000, 10_001)] == [
        "frozen",
        "frozen",
        "gradual",
        "gradual",
        "full",
    ]
    assert replace(config, auto_frozen_below=50).resolve_mode(60) == "gradual"
    assert replace(config, mode="lora").resolve_mode(10) == "lora"


def test_config_validation(default_model_dir):
    encoder = EncoderConfig(model_dir=default_model_dir)
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="quick", encoder=encoder)
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.5, encoder=encoder)


def test_unknown_labels_are_rejected(tiny_dataset, small_config):
    with pytest.raises(ValueError, match="unknown"):
        train_classifier(["a text"], ["weather"], tiny_dataset.label_names, config=small_config)


def test_thresholds_maximize_each_class_f1():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.35, 0.1], [0.3, 0.6], [0.1, 0.7]])

    thresholds = tune_thresholds(y, probs)

    assert thresholds[0] == pytest.approx(0.35)  # catches both positives, none of the negatives
    assert thresholds[1] == pytest.approx(0.6)  # F1 2/3 beats 0.7's F1 of 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_fine_tuning_starts_from_a_linear_probe_and_keeps_it_when_fine_tuning_only_hurts(
    tiny_dataset, small_config, mode
):
    # Absurd learning rates wreck the fine-tuned epoch, so early stopping must fall back to the probe.
    config = replace(
        small_config, mode=mode, linear_probe=True, epochs=1, head_lr=50.0, encoder_lr=1.0, lora_lr=5.0
    )
    model = train_classifier(
        tiny_dataset.train_texts,
        tiny_dataset.train_labels,
        tiny_dataset.label_names,
        config=config,
        val_texts=tiny_dataset.val_texts,
        val_labels=tiny_dataset.val_labels,
    )

    probe, tuned = model.epoch_log[0], model.epoch_log[1]
    assert (probe["epoch"], probe["phase"]) == (0, "probe") and probe["probe_epochs"] >= 1
    assert probe["val_macro_f1"] >= 0.9 > tuned["val_macro_f1"]
    assert model.best_epoch == 0
    assert model.val_metrics["macro_f1"] == pytest.approx(probe["val_macro_f1"])
    # The kept weights are a plain encoder + head (LoRA folded away) that predicts like the probe.
    assert not any("lora_" in name for name, _ in model.classifier.named_parameters())
    predicted = model.predict(tiny_dataset.val_texts)
    truth = [tiny_dataset.label_names.index(y) for y in tiny_dataset.val_labels]
    assert float(np.mean(predicted == np.array(truth))) >= 0.9


def test_the_training_device_is_validated():
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="gpu")
    assert TrainConfig(device="cpu").resolve_device().type == "cpu"
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TrainConfig(device="cuda").resolve_device()
