import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from training.drift import drift_window
from training.drift_reference import DriftReference, build_drift_reference, combine_drift_references
from training.drift_signals import DriftConfig, holm_bonferroni, sample_novelty
from training.drift_text import malformed_text_counts
from training.query import entropy_scores

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


# --- multiple testing ---------------------------------------------------------------------------------------
def test_holm_keeps_one_marginal_p_value_among_four_signals_from_alerting() -> None:
    # Given four signals of one window, one of them marginal (below alpha on its own, not below alpha / 4)
    p_values = [0.004, 0.2, 0.5, 0.9]

    rejected, levels = holm_bonferroni(p_values, 0.01)

    # then nothing is rejected: the smallest p-value faces alpha / 4
    assert not rejected.any()
    assert levels[0] == pytest.approx(0.0025)
    assert p_values[0] < 0.01


def test_holm_steps_down_and_rejects_what_bonferroni_rejects_and_more() -> None:
    rejected, levels = holm_bonferroni([0.5, 0.003, 0.002, 0.9], 0.01)
    # sorted: 0.002 vs 0.01/4, 0.003 vs 0.01/3 (Bonferroni's 0.0025 would keep it), 0.5 vs 0.01/2: stop
    assert rejected.tolist() == [False, True, True, False]
    assert levels.tolist() == pytest.approx([0.005, 0.01 / 3, 0.0025, 0.01])
    # the step-down stops at the first p-value above its level, even if a later one is below its own
    assert holm_bonferroni([0.001, 0.004, 0.0045, 0.9], 0.01)[0].tolist() == [True, False, False, False]


def _rows_with_classes(data: dict[str, Any], counts: list[int]) -> dict[str, Any]:
    """The first ``counts[c]`` rows of ``data`` predicted as class c, for every class."""
    predicted = data["probs"].argmax(axis=1)
    rows = np.concatenate([np.flatnonzero(predicted == c)[:n] for c, n in enumerate(counts)])
    return {
        "probs": data["probs"][rows],
        "embeddings": data["embeddings"][rows],
        "token_stats": {key: value[rows] for key, value in data["token_stats"].items()},
        "texts": [data["texts"][i] for i in rows],
    }


def test_a_window_with_one_marginal_signal_among_four_does_not_alert(reference: DriftReference) -> None:
    # Given a window of 40 ordinary samples whose class mix is off by chance (20/6/6/8): alone, the class test
    # would reject at alpha = 0.01, and the mix moved far enough (JS > 0.1)
    window = _rows_with_classes(traffic(4000, seed=40), [20, 6, 6, 8])

    result = drift_window(reference, **window)

    tests = {t["name"]: t for t in result.tests}
    class_test = tests["class_mix"]
    assert class_test["p_value"] < 0.01 and class_test["effect"]
    assert {"class_mix", "confidence", "embedding_mmd", "length"} <= set(tests)  # four signals tested
    # then Holm compares it with alpha / (number of tests) and the window does not alert
    assert class_test["level"] == pytest.approx(0.01 / len(tests)) and not class_test["significant"]
    assert not result.alert and result.reasons == []
    assert result.correction == "holm" and result.alpha == 0.01


# --- which data the reference comes from ---------------------------------------------------------------------
def population(n: int, seed: int) -> dict[str, Any]:
    """Traffic where a quarter of the samples sit between business and sport (the model hesitates on them)
    and the rest are clear cases of the four classes."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.25
    y = rng.choice(K, size=n)
    y[hard] = rng.choice(2, size=int(hard.sum()))
    logits = 4.0 * np.eye(K)[y] + rng.normal(size=(n, K))
    logits[hard, :2] = 1.5 + 0.3 * rng.normal(size=(int(hard.sum()), 2))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    centres = CENTERS[y].copy()
    centres[hard] = (CENTERS[0] + CENTERS[1]) / 2
    token_count = rng.poisson(150, size=n)
    return {
        "probs": probs,
        "embeddings": centres + 3.0 * rng.normal(size=(n, D)),
        "token_stats": {
            "token_count": token_count,
            "truncated": token_count > 256,
            "unk_count": rng.poisson(0.02, n),
        },
        "texts": [f"article number {i}" for i in range(n)],
    }


def _take(data: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {
        "probs": data["probs"][rows],
        "embeddings": data["embeddings"][rows],
        "token_stats": {key: value[rows] for key, value in data["token_stats"].items()},
        "texts": [data["texts"][i] for i in rows],
    }


@pytest.fixture(scope="module")
def queue_labeled() -> dict[str, Any]:
    """A pool of 3,000 of which the queue labeled the 600 most uncertain; the labeled-split reference (a 15%
    validation split of them), the pool's own, and the pool's combined with the labeled data by share."""
    pool = population(3000, seed=100)
    labeled = np.argsort(-entropy_scores(pool["probs"]), kind="stable")[:600]
    rest = np.setdiff1d(np.arange(3000), labeled)
    validation = np.random.default_rng(0).choice(labeled, size=90, replace=False)
    labeled_split = build_drift_reference(label_names=NAMES, **_take(pool, validation))
    pool_only = build_drift_reference(label_names=NAMES, max_embeddings=2000, **_take(pool, rest))
    combined = combine_drift_references([(pool_only, len(rest)), (labeled_split, len(labeled))])
    return {"labeled_split": labeled_split, "pool_only": pool_only, "pool": combined}


def test_the_pool_reference_differs_from_an_uncertainty_chosen_labeled_set(
    queue_labeled: dict[str, Any],
) -> None:
    labeled, pool = queue_labeled["labeled_split"], queue_labeled["pool"]
    # The queue took the hesitant business/sport cases: the labeled mix leans to those two classes and the
    # model is far less sure there
    assert labeled.class_shares[:2].sum() > pool.class_shares[:2].sum() + 0.15
    assert float(jensenshannon(labeled.class_shares, pool.class_shares, base=2)) > 0.1
    assert labeled.confidences.mean() < pool.confidences.mean() - 0.2


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_in_domain_windows_alert_against_the_labeled_split_but_not_against_the_pool(
    queue_labeled: dict[str, Any], seed: int
) -> None:
    # Given a window of production traffic drawn like the pool (before anything was labeled)
    window = population(200, seed=seed)

    # then the labeled-split reference calls it drifted ("model confidence rose"), and the pool reference does not
    against_labeled = drift_window(queue_labeled["labeled_split"], **window)
    assert against_labeled.alert and against_labeled.confidence_shift["alert"], against_labeled.reasons
    against_pool = drift_window(queue_labeled["pool"], **window)
    assert not against_pool.alert, against_pool.reasons


def test_the_pool_alone_lacks_what_the_queue_took_out_of_it(queue_labeled: dict[str, Any]) -> None:
    # Without the labeled stratum, the pool has lost most hesitant cases, so ordinary traffic looks less sure
    window = population(200, seed=3)
    result = drift_window(queue_labeled["pool_only"], **window)
    assert result.confidence_shift["alert"] and "model confidence dropped" in result.reasons[0], (
        result.reasons
    )
    assert not drift_window(queue_labeled["pool"], **window).alert


def test_an_unseen_topic_alerts_against_the_pool_reference(queue_labeled: dict[str, Any]) -> None:
    window = population(200, seed=7)
    window["embeddings"][:100] = traffic(100, seed=8, shift=40.0)["embeddings"]
    result = drift_window(queue_labeled["pool"], **window)
    assert result.alert and result.embedding_drift is not None and result.embedding_drift["alert"]


def test_combined_references_weigh_each_stratum_by_its_share_and_its_evidence() -> None:
    a = build_drift_reference(label_names=NAMES, **traffic(1000, seed=50, mix=np.array([0.7, 0.1, 0.1, 0.1])))
    b = build_drift_reference(label_names=NAMES, **traffic(100, seed=51, mix=np.array([0.1, 0.1, 0.1, 0.7])))
    combined = combine_drift_references([(a, 3.0), (b, 1.0)], description={"kind": "test"})
    expected = 0.75 * a.class_counts / a.n + 0.25 * b.class_counts / b.n
    assert combined.class_shares == pytest.approx(expected / expected.sum(), abs=0.01)
    # Kish's effective size: 1 / (0.75^2 / 1000 + 0.25^2 / 100), not 1,100
    assert combined.n == round(1 / (0.75**2 / 1000 + 0.25**2 / 100))
    # samples keep the 3:1 shares, as many rows as the smaller stratum allows (100 / 0.25 = 400)
    assert combined.confidences.size == 400 and combined.embedding_sample.shape == (400, D)
    assert combined.description == {"kind": "test"}
    assert combined.token_summary["truncation_rate"] == pytest.approx(
        0.75 * a.token_summary["truncation_rate"] + 0.25 * b.token_summary["truncation_rate"]
    )
