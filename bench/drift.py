"""Drift detection on BBC news: windows with an unseen topic vs in-domain windows, for two references.

    python bench/drift.py --case queue  [--windows 10] [--rounds 6] [--batch 50] [--shares 0.25,1.0]
    python bench/drift.py --case shares [--windows 20] [--shares 0.05,0.1,0.25,0.5]
    python bench/drift.py               (both)

For each of the 5 topics in turn, the model knows the other 4 and production may bring the fifth. A
logistic-regression head on frozen MiniLM embeddings (cached, ``bench/_bbc.py``) is the model, calibrated
with temperature scaling; every window runs the full ``drift_window`` check (predicted class mix,
confidence, embeddings: MMD and the share of novel samples, token statistics, malformed text; the tests
corrected together with Holm's procedure) with the default ``DriftConfig``.

``queue`` (results ``drift_queue``): the case that misled a trial. The known topics' articles are split into
a pool (60%) and production (40%, drawn like the pool). The labeled set is chosen by the queue: 5 random
seed articles per topic, then ``--rounds`` rounds of ``--batch`` articles picked from the pool by
``training.query.select_batch`` (entropy, diverse batches, as the queue rebuild does) under a model
retrained on the labels so far. The final model trains on the labeled set minus a 15% stratified
validation split (``training.data.stratified_split``, as the train job does). Every window is compared
with three references:

- ``labeled split``: the validation split alone (what versions kept before; still the fallback);
- ``scored pool``: what ``services.drift_reference.drift_reference_update`` builds: a sample of up to 2,000
  of the remaining pool scored by the model, combined with the labeled split weighted by the labeled share
  (``training.drift_reference.combine_drift_references``);
- ``pool alone``: the same pool sample without the labeled stratum (to show why it is there).

In-domain windows are drawn from production; shifted windows mix in a share of the unseen topic.
Target: 0 alerts on the in-domain windows against the scored pool, every shifted window alerts.

``shares`` (results ``drift``): the reference is a random 25% of the known topics' articles (a randomly
labeled validation split); windows from a production split mix in 0-50% of the unseen topic, to measure
detection power.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from _bbc import BBCData, load_bbc, markdown_table, write_results
from scipy.spatial.distance import jensenshannon
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from training.calibration import apply_temperature, fit_temperature
from training.data import stratified_split
from training.drift import drift_window
from training.drift_reference import DriftReference, build_drift_reference, combine_drift_references
from training.drift_signals import DriftConfig
from training.query import select_batch

#: ``DriftResult.tests`` names -> words in the table.
SIGNAL_NAMES = {
    "class_mix": "class mix",
    "confidence": "confidence",
    "embedding_mmd": "embeddings (MMD)",
    "novel_samples": "novel samples",
    "truncation": "truncation",
    "unknown_tokens": "unknown tokens",
    "length": "length",
    "malformed_unicode": "malformed Unicode",
}
POOL_SAMPLE = 2000  # as services.drift_reference.POOL_SAMPLE


def signals(result_dict: dict[str, Any]) -> list[str]:
    return [SIGNAL_NAMES[t["name"]] for t in result_dict["tests"] if t["alert"]]


class Corpus:
    """The BBC articles with cached embeddings and token statistics, and helpers over row indices."""

    def __init__(self, data: BBCData) -> None:
        self.data = data
        self.x = data.embeddings.astype(np.float64)
        self.y = data.labels
        started = time.perf_counter()
        stats = data.encoder.token_stats(data.texts)
        self.tokenize_seconds = time.perf_counter() - started
        self.tokens = {
            "token_count": stats.n_tokens,
            "truncated": stats.truncated,
            "unk_count": stats.n_unknown,
        }

    def rows(self, rows: np.ndarray, probs: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        """Everything ``build_drift_reference`` and ``drift_window`` take, for these rows."""
        return {
            "probs": probs(rows),
            "embeddings": self.x[rows],
            "token_stats": {key: value[rows] for key, value in self.tokens.items()},
            "texts": [self.data.texts[i] for i in rows],
        }


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def _summarise(
    rows_out: dict[str, dict[str, list]], measure: Callable[[str], str]
) -> tuple[list[list], dict]:
    table_rows, summary = [], {}
    for condition, stats in rows_out.items():
        rate = float(np.mean(stats["alerts"]))
        counts = Counter(s for fired in stats["signals"] for s in fired)
        n = len(stats["alerts"])
        summary[condition] = {
            "alert_rate": rate,
            "alerts": int(np.sum(stats["alerts"])),
            "windows": n,
            "signal_rates": {s: c / n for s, c in counts.items()},
        }
        top = ", ".join(f"{s} {c / n:.0%}" for s, c in counts.most_common(4)) or "-"
        table_rows.append([*condition.split(" | "), measure(condition), f"{rate:.1%}", n, top])
    return table_rows, summary


def run_queue_case(corpus: Corpus, args: argparse.Namespace, config: DriftConfig) -> None:
    data, x, y = corpus.data, corpus.x, corpus.y
    rng = np.random.default_rng(args.seed)
    shares = [float(s) for s in args.shares.split(",")]
    conditions = [("in-domain", 0.0)] + [(f"{share:.0%} unseen topic", share) for share in shares]
    references = ("labeled split", "scored pool", "pool alone")
    rows_out: dict[str, dict[str, list]] = {
        f"{ref} | {cond}": {"alerts": [], "signals": []} for ref in references for cond, _ in conditions
    }
    mismatch: list[dict[str, float]] = []
    window_seconds: list[float] = []
    for unseen in range(len(data.label_names)):
        known = [c for c in range(len(data.label_names)) if c != unseen]
        names = [data.label_names[c] for c in known]
        y_known = np.array([known.index(int(v)) if int(v) in known else -1 for v in y])
        known_rows = rng.permutation(np.flatnonzero(y != unseen))
        cut = int(0.6 * len(known_rows))
        pool, production = known_rows[:cut], known_rows[cut:]
        unseen_rows = np.flatnonzero(y == unseen)

        # The queue: random seeds, then diverse batches of the most uncertain under the model so far.
        labeled = np.concatenate(
            [rng.choice(pool[y_known[pool] == c], 5, replace=False) for c in range(len(known))]
        )
        for round_ in range(args.rounds):
            model = _fit(x[labeled], y_known[labeled], args.C)
            unlabeled = np.setdiff1d(pool, labeled)
            picked = select_batch(
                model.predict_proba(x[unlabeled]), args.batch, embeddings=x[unlabeled], seed=round_
            )
            labeled = np.concatenate([labeled, unlabeled[picked]])

        # The train job: a 15% stratified validation split, the rest trains; temperature on validation.
        rest_idx, val_idx = stratified_split([names[int(v)] for v in y_known[labeled]], 0.15, seed=0)
        train, val = labeled[rest_idx], labeled[val_idx]
        model = _fit(x[train], y_known[train], args.C)
        temperature = fit_temperature(model.decision_function(x[val]), y_known[val])

        def probs_of(
            rows: np.ndarray, model: LogisticRegression = model, t: float = temperature
        ) -> np.ndarray:
            return apply_temperature(model.decision_function(x[rows]), t)

        labeled_split = build_drift_reference(label_names=names, seed=args.seed, **corpus.rows(val, probs_of))
        unlabeled = np.setdiff1d(pool, labeled)
        sample = np.sort(unlabeled[np.random.default_rng(0).permutation(len(unlabeled))[:POOL_SAMPLE]])
        pool_alone = build_drift_reference(
            label_names=names,
            max_embeddings=POOL_SAMPLE,
            max_confidences=POOL_SAMPLE,
            seed=args.seed,
            **corpus.rows(sample, probs_of),
        )
        scored_pool = combine_drift_references([(pool_alone, len(unlabeled)), (labeled_split, len(labeled))])
        by_name: dict[str, DriftReference] = {
            "labeled split": labeled_split,
            "scored pool": scored_pool,
            "pool alone": pool_alone,
        }
        production_ref = build_drift_reference(label_names=names, **corpus.rows(production, probs_of))
        mismatch.append(
            {
                "labeled_js_to_production": float(
                    jensenshannon(labeled_split.class_shares, production_ref.class_shares, base=2)
                ),
                "pool_js_to_production": float(
                    jensenshannon(scored_pool.class_shares, production_ref.class_shares, base=2)
                ),
                "labeled_mean_confidence": float(labeled_split.confidences.mean()),
                "pool_mean_confidence": float(scored_pool.confidences.mean()),
                "production_mean_confidence": float(production_ref.confidences.mean()),
                "n_labeled": len(labeled),
                "n_pool": len(unlabeled),
            }
        )

        for condition, share in conditions:
            for _ in range(args.windows):
                n_unseen = int(round(share * args.window_size))
                rows = np.concatenate(
                    [
                        rng.choice(production, size=args.window_size - n_unseen, replace=False),
                        rng.choice(unseen_rows, size=n_unseen, replace=False),
                    ]
                )
                window = corpus.rows(rows, probs_of)
                for name, reference in by_name.items():
                    start = time.perf_counter()
                    result = drift_window(reference, config=config, **window).to_dict()
                    window_seconds.append(time.perf_counter() - start)
                    stats = rows_out[f"{name} | {condition}"]
                    stats["alerts"].append(bool(result["alert"]))
                    stats["signals"].append(signals(result))
        print(
            f"unseen topic {data.label_names[unseen]} ({len(labeled)} labeled by the queue, pool {len(unlabeled)}): "
            + "; ".join(
                f"{ref} "
                + ", ".join(
                    f"{cond} {np.mean(rows_out[f'{ref} | {cond}']['alerts'][-args.windows :]):.0%}"
                    for cond, _ in conditions
                )
                for ref in references
            ),
            flush=True,
        )

    def measure(condition: str) -> str:
        return "false alarms" if condition.endswith("in-domain") else "detection"

    table_rows, summary = _summarise(rows_out, measure)
    in_domain = summary["scored pool | in-domain"]
    shifted = [summary[f"scored pool | {cond}"] for cond, share in conditions if share > 0]
    target = {
        "in_domain_windows": in_domain["windows"],
        "in_domain_alerts": in_domain["alerts"],
        "shifted_windows": sum(s["windows"] for s in shifted),
        "shifted_alerts": sum(s["alerts"] for s in shifted),
    }
    target["met"] = (
        target["in_domain_windows"] >= 10
        and target["in_domain_alerts"] == 0
        and target["shifted_alerts"] == target["shifted_windows"]
    )
    table = markdown_table(
        [
            "reference",
            "windows",
            "measure",
            "alert rate",
            "n windows",
            "signals that fired (share of windows)",
        ],
        table_rows,
    )
    m = {key: float(np.mean([row[key] for row in mismatch])) for key in mismatch[0]}
    notes = (
        f"Target (scored pool): 0 alerts on >= 10 in-domain windows and every shifted window alerts: "
        f"{'met' if target['met'] else 'NOT met'} ({target['in_domain_alerts']} of {target['in_domain_windows']} "
        f"in-domain windows alerted; {target['shifted_alerts']} of {target['shifted_windows']} shifted windows "
        f"alerted).\n\n"
        f"Each of the 5 BBC topics held out in turn; known topics split 60% pool / 40% production. Labeled by the "
        f"queue: 5 random articles per topic, then {args.rounds} rounds of {args.batch} (entropy, diverse batches) "
        f"= {m['n_labeled']:.0f} labels; {m['n_pool']:.0f} left in the pool. Windows of {args.window_size} "
        f"articles, {args.windows} per condition and held-out topic, each compared with all three references. "
        f"Mean over topics: predicted class mix JS distance to production {m['labeled_js_to_production']:.2f} "
        f"(labeled split) vs {m['pool_js_to_production']:.2f} (scored pool); mean confidence "
        f"{m['labeled_mean_confidence']:.2f} (labeled split), {m['pool_mean_confidence']:.2f} (scored pool), "
        f"{m['production_mean_confidence']:.2f} (production). Logistic regression (C={args.C}) on frozen MiniLM "
        f"embeddings (mean pooling, max_length 256) with temperature scaling; default DriftConfig "
        f"(alpha={config.alpha} family-wise, Holm over the tests of a window). One window check takes "
        f"{np.median(window_seconds) * 1000:.0f} ms (median)."
    )
    write_results(
        "drift_queue",
        "Drift against a queue-chosen labeled set: labeled split vs scored pool references (BBC news)",
        {
            "window_size": args.window_size,
            "windows_per_condition": args.windows,
            "rounds": args.rounds,
            "batch": args.batch,
            "summary": summary,
            "target": target,
            "reference_mismatch": mismatch,
            "config": config.to_dict(),
            "median_window_seconds": float(np.median(window_seconds)),
        },
        table,
        notes,
        script="drift",
    )


def run_shares_case(corpus: Corpus, args: argparse.Namespace, config: DriftConfig) -> None:
    data, x, y = corpus.data, corpus.x, corpus.y
    rng = np.random.default_rng(args.seed)
    shares = [float(s) for s in args.shares.split(",")]
    rows_out: dict[str, dict[str, list]] = {}
    window_seconds: list[float] = []
    conditions = [("in-distribution", 0.0)] + [(f"{share:.0%} unseen", share) for share in shares]
    for unseen in range(len(data.label_names)):
        known = [c for c in range(len(data.label_names)) if c != unseen]
        names = [data.label_names[c] for c in known]
        y_known = np.array([known.index(int(v)) if int(v) in known else -1 for v in y])
        known_rows = rng.permutation(np.flatnonzero(y != unseen))
        unseen_rows = np.flatnonzero(y == unseen)
        half, three_quarters = len(known_rows) // 2, (3 * len(known_rows)) // 4
        train, ref, prod = known_rows[:half], known_rows[half:three_quarters], known_rows[three_quarters:]
        model = _fit(x[train], y_known[train], args.C)
        temperature = fit_temperature(model.decision_function(x[ref]), y_known[ref])

        def probs_of(
            rows: np.ndarray, model: LogisticRegression = model, t: float = temperature
        ) -> np.ndarray:
            return apply_temperature(model.decision_function(x[rows]), t)

        reference = build_drift_reference(label_names=names, seed=args.seed, **corpus.rows(ref, probs_of))
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
                result = drift_window(reference, config=config, **corpus.rows(rows, probs_of)).to_dict()
                window_seconds.append(time.perf_counter() - start)
                stats["alerts"].append(bool(result["alert"]))
                stats["signals"].append(signals(result))
        print(
            f"unseen topic {data.label_names[unseen]}: "
            + ", ".join(f"{c} {np.mean(rows_out[c]['alerts'][-args.windows :]):.0%}" for c, _ in conditions),
            flush=True,
        )

    def measure(condition: str) -> str:
        return "false-alarm rate" if condition == "in-distribution" else "detection rate"

    table_rows, summary = _summarise(rows_out, measure)
    table = markdown_table(
        ["windows", "measure", "alert rate", "n windows", "signals that fired (share of windows)"], table_rows
    )
    notes = (
        f"Each of the 5 BBC topics held out in turn; windows of {args.window_size} articles, {args.windows} per "
        f"condition and held-out topic. Reference = 25% of the known topics' articles (a random validation split), "
        f"logistic regression (C={args.C}) on frozen MiniLM embeddings (mean pooling, max_length 256) with "
        f"temperature scaling. Default DriftConfig (alpha={config.alpha} family-wise, Holm over the tests of a "
        f"window; JS > {config.class_js_threshold}, KS > {config.confidence_ks_threshold}, MMD with "
        f"{config.n_permutations} permutations). One window takes {np.median(window_seconds) * 1000:.0f} ms "
        f"(median; p95 {np.quantile(window_seconds, 0.95) * 1000:.0f} ms); tokenizing the corpus for token "
        f"statistics took {corpus.tokenize_seconds:.0f} s."
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=["queue", "shares", "all"], default="all")
    parser.add_argument(
        "--windows",
        type=int,
        help="windows per condition and held-out topic (default 10 for queue, 20 for shares)",
    )
    parser.add_argument("--window-size", type=int, default=200)
    parser.add_argument(
        "--shares",
        help="shares of the unseen topic in a shifted window "
        "(default 0.25,1.0 for queue, 0.05,0.1,0.25,0.5 for shares)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="queue rounds after the seed (queue case)")
    parser.add_argument("--batch", type=int, default=50, help="labels per queue round (queue case)")
    parser.add_argument("--C", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = Corpus(load_bbc())
    config = DriftConfig()
    if args.case in ("queue", "all"):
        queue_args = argparse.Namespace(
            **{**vars(args), "windows": args.windows or 10, "shares": args.shares or "0.25,1.0"}
        )
        run_queue_case(corpus, queue_args, config)
    if args.case in ("shares", "all"):
        share_args = argparse.Namespace(
            **{**vars(args), "windows": args.windows or 20, "shares": args.shares or "0.05,0.1,0.25,0.5"}
        )
        run_shares_case(corpus, share_args, config)


if __name__ == "__main__":
    main()
