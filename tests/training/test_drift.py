import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.drift import (
    DriftConfig,
    DriftReference,
    build_drift_reference,
    drift_window,
    malformed_text_counts,
    sample_novelty,
)

NAMES = ["business", "sport", "tech", "politics"]
K, D = 4, 384
CENTERS = np.random.default_rng(123).normal(size=(K, D))
EVEN = np.full(K, 0.25)


def traffic(
    n: int, seed: int, mix: np.ndarray = EVEN, shift: float = 0.0, texts: list[str] | None = None
) -> dict[str, Any]:
    """Synthetic model outputs for n samples: probs, embeddings, token statistics and texts."""
    rng = np.random.default_rng(seed)
    y = rng.choice(K, size=n, p=mix)
    direction = np.zeros(D)
    direction[:20] = 1.0
    embeddings = CENTERS[y] + 3.0 * rng.normal(size=(n, D)) + shift * direction
    logits = 3.0 * np.eye(K)[y] + rng.normal(size=(n, K))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    token_count = rng.poisson(150, size=n)
    return {
        "probs": probs,
        "embeddings": embeddings,
        "token_stats": {
            "token_count": token_count,
            "truncated": token_count > 256,
            "unk_count": rng.poisson(0.02, n),
        },
        "texts": texts if texts is not None else [f"article number {i}\nwith a\ttab" for i in range(n)],
    }


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return build_drift_reference(label_names=NAMES, **traffic(2000, seed=0))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_iid_windows_do_not_alert(reference: DriftReference, seed: int) -> None:
    result = drift_window(reference, **traffic(200, seed=seed))
    assert not result.alert, result.reasons
    assert result.reasons == []


def test_class_mix_shift_alerts_naming_the_class(reference: DriftReference) -> None:
    result = drift_window(reference, **traffic(200, seed=6, mix=np.array([0.1, 0.1, 0.7, 0.1])))
    assert result.alert and result.class_shift["alert"]
    assert any("class mix" in r and "tech" in r for r in result.reasons), result.reasons
    assert result.class_distribution["tech"] > 0.5
    assert result.class_shift["js_distance"] > 0.2


def test_embedding_shift_alone_alerts(reference: DriftReference) -> None:
    window = traffic(200, seed=7, shift=1.5)
    result = drift_window(reference, **window)
    assert result.embedding_drift is not None and result.embedding_drift["alert"]
    assert not result.class_shift["alert"]
    assert any("embeddings" in r for r in result.reasons), result.reasons


def test_a_minority_of_unfamiliar_samples_alerts(reference: DriftReference) -> None:
    # 10% of the window comes from far away; the rest is ordinary traffic.
    window = traffic(200, seed=23)
    window["embeddings"][:20] = traffic(20, seed=24, shift=40.0)["embeddings"]
    result = drift_window(reference, **window)
    assert result.embedding_drift is not None
    assert result.embedding_drift["novel_share"] >= 0.1
    assert any("unfamiliar content" in r for r in result.reasons), result.reasons


def test_confidence_drop_alerts(reference: DriftReference) -> None:
    window = traffic(200, seed=8)
    window["probs"] = 0.5 * window["probs"] + 0.5 / K
    result = drift_window(reference, **window)
    assert result.confidence_shift["alert"]
    assert any("confidence dropped" in r for r in result.reasons), result.reasons
    assert result.mean_confidence < result.confidence_shift["reference_mean_confidence"]


def test_truncated_and_unknown_token_heavy_text_alerts(reference: DriftReference) -> None:
    window = traffic(200, seed=9)
    window["token_stats"]["truncated"][:80] = True
    window["token_stats"]["token_count"][:80] = 512
    window["token_stats"]["unk_count"][:40] = 5
    result = drift_window(reference, **window)
    assert set(result.anomalies["alerts"]) >= {"truncation", "unknown_tokens", "length"}
    assert any("truncated" in r for r in result.reasons)
    assert any("unknown tokens" in r for r in result.reasons)
    assert result.anomalies["truncation_rate"] == pytest.approx(0.4)


def test_malformed_unicode_alerts(reference: DriftReference) -> None:
    texts = (
        ["fine text"] * 170 + ["broken \ufffd bytes"] * 10 + ["nul\x00byte"] * 10 + ["lone \ud800 half"] * 10
    )
    result = drift_window(reference, **traffic(200, seed=10, texts=texts))
    assert "malformed_unicode" in result.anomalies["alerts"]
    assert result.anomalies["malformed_share"] == pytest.approx(0.15)
    assert any("malformed" in r for r in result.reasons)


def test_malformed_text_counts_tell_the_kinds_apart() -> None:
    counts = malformed_text_counts(
        ["ok\tfine\r\n", "a\x00b", "c\ufffd", "d\ud83d", "bell\x07", "ctl\x85 and \ufffd"]
    )
    assert counts == {"lone_surrogate": 1, "replacement_char": 2, "nul": 1, "control_char": 2, "any": 5}


def test_a_window_takes_under_a_second(reference: DriftReference) -> None:
    window = traffic(200, seed=11)
    drift_window(reference, **window)  # warm the cached projection of the reference sample
    start = time.perf_counter()
    drift_window(reference, **window)
    assert time.perf_counter() - start < 1.0


def test_result_is_json(reference: DriftReference) -> None:
    result = drift_window(reference, **traffic(50, seed=12))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) >= {
        "class_distribution",
        "class_shift",
        "mean_confidence",
        "confidence_shift",
        "embedding_drift",
        "anomalies",
        "alert",
        "reasons",
    }
    assert sum(data["class_distribution"].values()) == pytest.approx(1.0)


def test_reference_round_trips_through_json_and_npz(reference: DriftReference, tmp_path: Path) -> None:
    window = traffic(200, seed=13, mix=np.array([0.4, 0.4, 0.1, 0.1]))
    expected = drift_window(reference, **window).to_dict()

    from_json = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    json_path, npz_path = reference.save(tmp_path / "drift_reference")
    assert json_path.exists() and npz_path.exists()
    from_files = DriftReference.load(tmp_path / "drift_reference.json")

    for loaded in (from_json, from_files):
        assert loaded.embedding_sample.dtype == np.float16
        assert drift_window(loaded, **window).to_dict() == expected


def test_reference_stays_small(reference: DriftReference, tmp_path: Path) -> None:
    assert reference.embedding_sample.shape == (500, D)
    _, npz_path = reference.save(tmp_path / "ref")
    assert npz_path.stat().st_size < 1_000_000


def test_novelty_is_high_far_from_the_reference_only(reference: DriftReference) -> None:
    near = sample_novelty(reference, traffic(200, seed=14)["embeddings"])
    far = sample_novelty(reference, traffic(50, seed=15, shift=40.0)["embeddings"])
    assert 0.3 < near.mean() < 0.7
    assert far.min() > 0.95


def test_without_embeddings_or_token_stats_the_other_signals_still_work() -> None:
    data = traffic(300, seed=16)
    small = build_drift_reference(probs=data["probs"], label_names=NAMES)
    result = drift_window(
        small,
        probs=traffic(200, seed=17, mix=np.array([0.7, 0.1, 0.1, 0.1]))["probs"],
        embeddings=data["embeddings"][:200],
    )
    assert result.embedding_drift is None
    assert result.alert and result.class_shift["alert"]


def test_small_reference_stays_calibrated() -> None:
    small = build_drift_reference(label_names=NAMES, **traffic(100, seed=18))
    assert small.embedding_sample.shape == (100, D)
    for seed in (19, 20, 21):
        assert not drift_window(small, **traffic(100, seed=seed)).alert


def test_stricter_config_alerts_on_smaller_shifts(reference: DriftReference) -> None:
    window = traffic(200, seed=22, mix=np.array([0.2, 0.25, 0.3, 0.25]))
    assert not drift_window(reference, **window).class_shift["alert"]
    lenient = DriftConfig(alpha=0.5, class_js_threshold=0.05)
    assert drift_window(reference, **window, config=lenient).class_shift["alert"]


@pytest.mark.slow
def test_real_tokenizer_statistics_flag_long_and_unknown_heavy_text(minilm_encoder: Any) -> None:
    # Given a reference of short news-like sentences tokenized by MiniLM (max_length=32),
    rng = np.random.default_rng(0)
    words = [
        "the",
        "market",
        "rose",
        "after",
        "the",
        "bank",
        "held",
        "rates",
        "while",
        "the",
        "team",
        "won",
        "the",
        "final",
    ]
    reference_texts = [" ".join(rng.choice(words, size=rng.integers(5, 15))) for _ in range(300)]
    data = traffic(300, seed=30, texts=reference_texts)
    data["token_stats"] = minilm_encoder.token_stats(reference_texts)
    reference = build_drift_reference(label_names=NAMES, **data)

    # when production sends long texts full of characters the vocabulary lacks,
    window_texts = [" ".join(["\U0001f600\U0001f680 rates"] * 30) for _ in range(100)]
    window = traffic(100, seed=31, texts=window_texts)
    window["token_stats"] = minilm_encoder.token_stats(window_texts)
    result = drift_window(reference, **window)

    # then the window alerts on truncation, unknown tokens and length.
    assert {"truncation", "unknown_tokens", "length"} <= set(result.anomalies["alerts"])
    assert result.anomalies["truncation_rate"] == 1.0
