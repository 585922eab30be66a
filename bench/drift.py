"""Drift detection on BBC news: windows with an unseen topic vs in-distribution windows.

    python bench/drift.py [--windows 20] [--window-size 200] [--shares 0.1,0.25,0.5]

For each of the 5 topics in turn, the model knows the other 4: their articles are split into train
(50%), reference (25%, the validation data a model version keeps its DriftReference from) and a
production pool (25%). A logistic-regression head on frozen MiniLM embeddings (cached) is trained on the
train part and calibrated with temperature scaling on the reference part. Production windows of
``--window-size`` articles are drawn from the production pool (in-distribution, for false alarms) or
mix in a share of articles of the unseen topic (for detection). Every window runs the full
``drift_window`` check: predicted class mix, confidence, embeddings (MMD and the share of novel
samples), token statistics and malformed text, with the default ``DriftConfig``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter

import numpy as np
from _bbc import load_bbc, markdown_table, write_results
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from training.calibration import apply_temperature, fit_temperature
from training.drift import DriftConfig, build_drift_reference, drift_window


def signals(result_dict: dict) -> list[str]:
    fired = []
    if result_dict["class_shift"]["alert"]:
        fired.append("class mix")
    if result_dict["confidence_shift"]["alert"]:
        fired.append("confidence")
    embedding = result_dict["embedding_drift"]
    if embedding and embedding["p_value"] < result_dict["alpha_per_test"]:
        fired.append("embeddings (MMD)")
    if embedding and any(r.startswith("unfamiliar content") for r in result_dict["reasons"]):
        fired.append("novel samples")
    fired.extend(result_dict["anomalies"]["alerts"])
    return fired


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=20, help="windows per condition and held-out topic")
    parser.add_argument("--window-size", type=int, default=200)
    parser.add_argument(
        "--shares", default="0.05,0.1,0.25,0.5", help="shares of the unseen topic in a window"
    )
    parser.add_argument("--C", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]

    data = load_bbc()
    x = data.embeddings.astype(np.float64)
    y = data.labels
    started = time.perf_counter()
    token_stats = data.encoder.token_stats(data.texts)
    tokenize_seconds = time.perf_counter() - started
    tokens = {
        "token_count": token_stats.n_tokens,
        "truncated": token_stats.truncated,
        "unk_count": token_stats.n_unknown,
    }
    rng = np.random.default_rng(args.seed)
    config = DriftConfig()

    rows_out: dict[str, dict[str, list]] = {}
    window_seconds: list[float] = []
    for unseen in range(len(data.label_names)):
        known = [c for c in range(len(data.label_names)) if c != unseen]
        names = [data.label_names[c] for c in known]
        remap = {c: i for i, c in enumerate(known)}
        known_rows = rng.permutation(np.flatnonzero(y != unseen))
        unseen_rows = np.flatnonzero(y == unseen)
        half, three_quarters = len(known_rows) // 2, (3 * len(known_rows)) // 4
        train, ref, prod = known_rows[:half], known_rows[half:three_quarters], known_rows[three_quarters:]
        y_known = np.array([remap.get(int(v), -1) for v in y])

        model = LogisticRegression(C=args.C, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train], y_known[train])
        temperature = fit_temperature(model.decision_function(x[ref]), y_known[ref])

        def probs_of(
            rows: np.ndarray, model: LogisticRegression = model, t: float = temperature
        ) -> np.ndarray:
            return apply_temperature(model.decision_function(x[rows]), t)

        def tokens_of(rows: np.ndarray) -> dict[str, np.ndarray]:
            return {key: value[rows] for key, value in tokens.items()}

        reference = build_drift_reference(
            probs=probs_of(ref),
            label_names=names,
            embeddings=x[ref],
            token_stats=tokens_of(ref),
            texts=[data.texts[i] for i in ref],
            seed=args.seed,
        )
        conditions = [("in-distribution", 0.0)] + [(f"{share:.0%} unseen", share) for share in shares]
        for condition, share in conditions:
            stats = rows_out.setdefault(condition, {"alerts": [], "signals": []})
            for _ in range(args.windows):
                n_unseen = int(round(share * args.window_size))
                rows = np.concatenate(
                    [
                        rng.choice(prod, size=args.window_size - n_unseen, replace=False),
                        rng.choice(unseen_rows, size=n_unseen, replace=False),
                    ]
                )
                start = time.perf_counter()
                result = drift_window(
                    reference,
                    probs=probs_of(rows),
                    embeddings=x[rows],
                    token_stats=tokens_of(rows),
                    texts=[data.texts[i] for i in rows],
                    config=config,
                ).to_dict()
                window_seconds.append(time.perf_counter() - start)
                stats["alerts"].append(bool(result["alert"]))
                stats["signals"].append(signals(result))
        print(
            f"unseen topic {data.label_names[unseen]}: "
            + ", ".join(f"{c} {np.mean(rows_out[c]['alerts'][-args.windows :]):.0%}" for c, _ in conditions),
            flush=True,
        )

    table_rows = []
    summary = {}
    for condition, stats in rows_out.items():
        rate = float(np.mean(stats["alerts"]))
        counts = Counter(s for fired in stats["signals"] for s in fired)
        n = len(stats["alerts"])
        summary[condition] = {
            "alert_rate": rate,
            "windows": n,
            "signal_rates": {s: c / n for s, c in counts.items()},
        }
        label = "false-alarm rate" if condition == "in-distribution" else "detection rate"
        top = ", ".join(f"{s} {c / n:.0%}" for s, c in counts.most_common(4)) or "-"
        table_rows.append([condition, label, f"{rate:.1%}", n, top])
    table = markdown_table(
        ["windows", "measure", "alert rate", "n windows", "signals that fired (share of windows)"], table_rows
    )
    notes = (
        f"Each of the 5 BBC topics held out in turn; windows of {args.window_size} articles, {args.windows} per "
        f"condition and held-out topic. Reference = 25% of the known topics' articles (validation split), "
        f"logistic regression (C={args.C}) on frozen MiniLM embeddings (mean pooling, max_length 256) with "
        f"temperature scaling. Default DriftConfig (alpha={config.alpha} family-wise, Bonferroni over the tests; "
        f"JS > {config.class_js_threshold}, KS > {config.confidence_ks_threshold}, MMD with "
        f"{config.n_permutations} permutations). One window takes {np.median(window_seconds) * 1000:.0f} ms "
        f"(median; p95 {np.quantile(window_seconds, 0.95) * 1000:.0f} ms); tokenizing the corpus for token "
        f"statistics took {tokenize_seconds:.0f} s."
    )
    write_results(
        "drift",
        "Drift detection on BBC news (unseen topic in production windows)",
        {
            "window_size": args.window_size,
            "windows_per_condition": args.windows,
            "summary": summary,
            "config": config.to_dict(),
            "median_window_seconds": float(np.median(window_seconds)),
        },
        table,
        notes,
    )


if __name__ == "__main__":
    main()
