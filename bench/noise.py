"""Label-noise detection on BBC news with planted label flips: each view and the weighted ensemble.

    python bench/noise.py [--corpora full,headlines] [--kinds uniform,confusion] [--seeds 3] [--noise 0.1]
                          [--no-today] [--finetune] [--finetune-epochs 2] [--finetune-max-length 128]
                          [--limit-per-label N] [--results noise]

Corpora: ``full``, the 2,225 articles as they are (the corpus of this benchmark's earlier tables), and
``headlines``, the first non-empty line of each article with repeated lines dropped (2,096 short texts:
the hard case, short texts with ambiguous classes). Embeddings: frozen MiniLM, mean pooling, max_length
256, cached in var/bench/embeddings.sqlite.

Noise kinds, ``--noise`` of the labels flipped:

- ``uniform``: examples chosen uniformly, each flipped to a uniformly chosen other class;
- ``confusion``: examples chosen uniformly, each flipped to another class drawn from its class's row of
  the off-diagonal confusion matrix of a cross-validated model on the clean labels: flips go between the
  classes the model (and people) mix up, e.g. business and politics, not uniformly;
- ``ambiguous`` (a harder stress test, not a default): examples chosen with probability proportional
  to the mass that model puts on other classes, each flipped to the other class it gives the most: the
  flips land on the ambiguous examples themselves, and many of them are defensible labels.

The cross-validated model is the mean of 5-fold logistic regression on the frozen embeddings (C=1) and
on TF-IDF n-grams (C=10), so the flips are not tailored to fool one family of views.

Out-of-sample probabilities (``training.noise_views.label_noise_views``, one shared set of 5 stratified folds per
seed): ``frozen_lr``, ``knn``, ``tfidf`` and, with ``--finetune``, ``finetuned`` (full fine-tuning per fold;
hours on 2 CPU cores, minutes on a GPU). Mixed by ``training.ensemble.weighted_ensemble`` (weights minimising the
mixture's out-of-fold log loss): the product's detector. For comparison: ``today``, the detector before
the views (the plain mean of logistic regression with C by 3-fold CV and kNN with 10 neighbours), and the
equal-weight mean of the views.

Scores against the planted flips (``training.noise.find_noise``, as the train job runs it):
precision / recall of ``is_issue``; precision@k of the label-quality ranking (k = number of flips);
AUROC of ``1 - label_quality``; seconds: wall time of each view (the ensembles: their views' sum).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from _bbc import CACHE, load_bbc, markdown_table, write_results
from sklearn.metrics import roc_auc_score

from training.cv_knn import oos_probs_knn
from training.cv_logistic import oos_probs_frozen
from training.cv_tfidf import oos_probs_tfidf
from training.ensemble import ensemble_probs, weighted_ensemble
from training.noise import find_noise
from training.noise_views import label_noise_views

METRICS = ("precision_at_k", "auroc", "precision", "recall", "seconds")
CORPUS_NAMES = {"full": "BBC full text", "headlines": "BBC headlines only"}
KIND_NAMES = {
    "uniform": "uniform flips",
    "confusion": "confusion-drawn flips",
    "ambiguous": "flips of ambiguous examples",
}
# (corpus, kind) -> (precision@k, AUROC) the ensemble must reach: issue 11's targets; full text must not
# lose against the detector before the views (bench/results/noise.json of 2026-11-26: 0.9595 / 0.9986).
TARGETS = {
    ("headlines", "uniform"): (0.80, 0.97),
    ("headlines", "confusion"): (0.70, 0.95),
    ("full", "uniform"): (0.96, 0.9986),
}


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def load_corpus(
    name: str, limit_per_label: int | None
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """texts, labels (n,), embeddings (n, 384), label names."""
    data = load_bbc(limit_per_label=limit_per_label)
    if name == "full":
        return data.texts, data.labels, data.embeddings.astype(np.float64), data.label_names
    if name != "headlines":
        raise SystemExit(f"unknown corpus {name!r}: full or headlines")
    from training.embedding_cache import EmbeddingCache

    seen: set[str] = set()
    texts: list[str] = []
    labels: list[int] = []
    for text, label in zip(data.texts, data.labels, strict=True):
        headline = first_line(text)
        if headline and headline not in seen:
            seen.add(headline)
            texts.append(headline)
            labels.append(int(label))
    embeddings = data.encoder.embed_cached(texts, EmbeddingCache(CACHE), batch_size=64)
    return texts, np.array(labels, dtype=np.int64), embeddings.astype(np.float64), data.label_names


def confusions_of(texts: list[str], embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Out-of-fold probabilities (n, k) on the clean labels of a model that favours no view.

    The mean of 5-fold logistic regression on the frozen embeddings (C=1) and on TF-IDF n-grams (C=10):
    a semantic and a lexical model, so the flips it draws are not tailored to fool one family of views.
    """
    return ensemble_probs(
        [
            oos_probs_frozen(embeddings, labels, n_classes, C=1.0, seed=0),
            oos_probs_tfidf(texts, labels, n_classes, C=10.0, seed=0),
        ]
    )


def flip(
    labels: np.ndarray,
    rate: float,
    n_classes: int,
    seed: int,
    kind: str = "uniform",
    confusions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels and the flipped mask (see the module docstring for the kinds).

    ``confusions``: out-of-fold probabilities (n, k) on the clean labels, needed by ``confusion`` and
    ``ambiguous``.
    """
    rng = np.random.default_rng(seed)
    n = labels.size
    size = int(round(rate * n))
    noisy = labels.copy()
    if kind == "uniform":
        chosen = rng.choice(n, size=size, replace=False)
        noisy[chosen] = (labels[chosen] + rng.integers(1, n_classes, size=chosen.size)) % n_classes
    elif kind == "confusion":
        assert confusions is not None
        matrix = np.zeros((n_classes, n_classes))
        np.add.at(matrix, (labels, confusions.argmax(axis=1)), 1.0)
        np.fill_diagonal(matrix, 0.0)
        chosen = rng.choice(n, size=size, replace=False)
        for i in chosen:
            row = matrix[labels[i]].copy()
            if row.sum() <= 0:  # a class the model never confused: any other class
                row = np.ones(n_classes)
                row[labels[i]] = 0.0
            noisy[i] = rng.choice(n_classes, p=row / row.sum())
    elif kind == "ambiguous":
        assert confusions is not None
        others = confusions.copy()
        others[np.arange(n), labels] = 0.0
        weight = others.sum(axis=1) + 1e-9
        chosen = rng.choice(n, size=size, replace=False, p=weight / weight.sum())
        noisy[chosen] = others[chosen].argmax(axis=1)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    is_flipped = np.zeros(n, dtype=bool)
    is_flipped[chosen] = True
    return noisy, is_flipped


def score(noisy: np.ndarray, probs: np.ndarray, is_flipped: np.ndarray, names: list[str]) -> dict[str, float]:
    report = find_noise(noisy, probs, names)
    found = report.is_issue
    k = int(is_flipped.sum())
    worst = np.argsort(report.label_quality, kind="stable")[:k]
    tp = int((found & is_flipped).sum())
    return {
        "precision": tp / max(1, int(found.sum())),
        "recall": tp / k,
        "precision_at_k": float(is_flipped[worst].mean()),
        "auroc": float(roc_auc_score(is_flipped, 1.0 - report.label_quality)),
        "n_issues": int(found.sum()),
        "estimated_noise_rate": report.estimated_noise_rate,
    }


def run_case(
    texts: list[str],
    labels: np.ndarray,
    embeddings: np.ndarray,
    names: list[str],
    kind: str,
    seed: int,
    args: argparse.Namespace,
    confusions: np.ndarray | None,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One corpus, noise kind and seed: scores per row and what the ensemble chose."""
    k = len(names)
    noisy, is_flipped = flip(labels, args.noise, k, seed, kind, confusions)
    config = None
    if args.finetune:
        from training.encoder import EncoderConfig
        from training.train import TrainConfig

        config = TrainConfig(
            mode="full",
            encoder=EncoderConfig(max_length=args.finetune_max_length),
            epochs=args.finetune_epochs,
            seed=seed,
        )
    views = label_noise_views(
        embeddings,
        texts,
        noisy,
        k,
        seed=seed,
        finetune=args.finetune,
        label_names=names,
        finetune_config=config,
    )
    rows: dict[str, dict[str, float]] = {}
    for name, probs in views.probs.items():
        rows[name] = {**score(noisy, probs, is_flipped, names), "seconds": views.seconds[name]}
    cheap = [name for name in views.probs if name != "finetuned"]
    if not args.no_today:
        started = time.perf_counter()
        today = ensemble_probs(
            [oos_probs_frozen(embeddings, noisy, k, seed=seed, C="auto"), oos_probs_knn(embeddings, noisy, k)]
        )
        rows["today: mean(lr C=cv, knn k=10)"] = {
            **score(noisy, today, is_flipped, names),
            "seconds": time.perf_counter() - started,
        }
    cheap_seconds = sum(views.seconds[name] for name in cheap)
    rows["equal-weight mean of the views"] = {
        **score(noisy, ensemble_probs([views.probs[name] for name in cheap]), is_flipped, names),
        "seconds": cheap_seconds,
    }
    started = time.perf_counter()
    mixed, report = weighted_ensemble(
        {name: views.probs[name] for name in cheap}, noisy, k, seconds=views.seconds, settings=views.settings
    )
    rows["weighted ensemble"] = {
        **score(noisy, mixed, is_flipped, names),
        "seconds": cheap_seconds + time.perf_counter() - started,
    }
    details = {"ensemble": report.to_dict()}
    if "finetuned" in views.probs:
        started = time.perf_counter()
        mixed, report = weighted_ensemble(
            views.probs, noisy, k, seconds=views.seconds, settings=views.settings
        )
        rows["weighted ensemble + finetuned"] = {
            **score(noisy, mixed, is_flipped, names),
            "seconds": sum(views.seconds.values()) + time.perf_counter() - started,
        }
        details["ensemble_finetuned"] = report.to_dict()
    for name, value in rows.items():
        print(
            f"  {name:34s} P@k {value['precision_at_k']:.3f}  AUROC {value['auroc']:.4f}  "
            f"P {value['precision']:.3f}  R {value['recall']:.3f}  {value['seconds']:.1f} s",
            flush=True,
        )
    print("  weights " + ", ".join(f"{n} {w:.2f}" for n, w in report.weights.items()), flush=True)
    return rows, details


def summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        name: {
            m: {
                "mean": float(np.mean([r[name][m] for r in runs])),
                "std": float(np.std([r[name][m] for r in runs])),
            }
            for m in (*METRICS, "estimated_noise_rate")
        }
        for name in runs[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", default="full,headlines", help="comma-separated: full, headlines")
    parser.add_argument(
        "--kinds", default="uniform,confusion", help="comma-separated: uniform, confusion, ambiguous"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (different flips and folds)")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--no-today", action="store_true", help="skip the detector before the views")
    parser.add_argument("--finetune", action="store_true", help="add fine-tuned folds (slow on CPU)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-max-length", type=int, default=128)
    parser.add_argument("--results", default="noise", help="results name under bench/results/")
    parser.add_argument("--limit-per-label", type=int, default=None)
    args = parser.parse_args()
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    kinds = [c.strip() for c in args.kinds.split(",") if c.strip()]
    for kind in kinds:
        if kind not in KIND_NAMES:
            raise SystemExit(f"unknown noise kind {kind!r}: uniform, confusion or ambiguous")

    summary: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    sections: list[str] = []
    verdicts: list[str] = []
    for corpus in corpora:
        texts, labels, embeddings, names = load_corpus(corpus, args.limit_per_label)
        sizes[corpus] = len(texts)
        confusions = (
            confusions_of(texts, embeddings, labels, len(names)) if set(kinds) - {"uniform"} else None
        )
        for kind in kinds:
            key = f"{corpus}/{kind}"
            case_runs, case_details = [], []
            for seed in range(args.seeds):
                print(f"{CORPUS_NAMES[corpus]}, {KIND_NAMES[kind]}, seed {seed}", flush=True)
                rows, details = run_case(texts, labels, embeddings, names, kind, seed, args, confusions)
                case_runs.append(rows)
                case_details.append(details)
            summary[key] = summarise(case_runs)
            runs[key] = {"scores": case_runs, "ensembles": case_details}
            weights = {
                name: float(np.mean([d["ensemble"]["views"][name]["weight"] for d in case_details]))
                for name in case_details[0]["ensemble"]["views"]
            }
            table_rows = [
                [name]
                + [
                    f"{summary[key][name][m]['mean']:.4f} ± {summary[key][name][m]['std']:.4f}"
                    for m in METRICS[:4]
                ]
                + [
                    f"{summary[key][name]['seconds']['mean']:.1f}",
                    f"{weights[name]:.2f}" if name in weights else "",
                ]
                for name in summary[key]
            ]
            sections.append(
                f"### {CORPUS_NAMES[corpus]} ({len(texts)} texts), {args.noise:.0%} {KIND_NAMES[kind]}\n\n"
                + markdown_table(
                    [
                        "out-of-sample probabilities",
                        "precision@k",
                        "AUROC",
                        "precision",
                        "recall",
                        "seconds",
                        "weight",
                    ],
                    table_rows,
                )
            )
            if (corpus, kind) in TARGETS:
                p_at_k, auroc = TARGETS[(corpus, kind)]
                got = summary[key]["weighted ensemble"]
                met = got["precision_at_k"]["mean"] >= p_at_k and got["auroc"]["mean"] >= auroc
                verdicts.append(
                    f"{CORPUS_NAMES[corpus]}, {KIND_NAMES[kind]}: precision@k {got['precision_at_k']['mean']:.3f} "
                    f"(target {p_at_k}), AUROC {got['auroc']['mean']:.4f} (target {auroc}): "
                    f"{'met' if met else 'NOT met'}"
                )

    notes = (
        f"Mean ± std over {args.seeds} seed(s) (different flips and folds). 5-fold out-of-sample probabilities "
        "over one shared set of stratified folds; issues flagged by cleanlab `find_label_issues` "
        "(prune_by_noise_rate), ranking by self-confidence label quality; k = number of flips. Views: `frozen_lr` "
        "logistic regression on frozen MiniLM embeddings (C by out-of-fold log loss over 0.01..30), `knn` "
        "leave-one-out cosine kNN (neighbours by log loss over 5, 10, 20, 50), `tfidf` logistic regression on "
        "TF-IDF word 1-2-grams and char_wb 2-5-grams of the first 1,000 characters (C by log loss over 1..30). "
        "`weight`: the weighted ensemble's mean weight per view. Seconds are wall time on a machine shared with "
        "other work, so they vary with its load. Confusion-drawn flips: examples chosen uniformly, the new class "
        "drawn from the off-diagonal row of the true class in the confusion matrix of a cross-validated model "
        "(the mean of 5-fold logistic regression on embeddings, C=1, and on TF-IDF, C=10, clean labels); flips "
        "of ambiguous examples: examples drawn in proportion to the probability that model puts on other "
        "classes, each flipped to its most-confused class. "
        + ("Targets (issue 11): " + "; ".join(verdicts) + "." if verdicts else "")
        + (
            f" Fine-tuned folds: full fine-tune (LP-FT), max_length {args.finetune_max_length}, "
            f"{args.finetune_epochs} epochs, one model per fold."
            if args.finetune
            else " Fine-tuned folds not run (--finetune; hours on 2 CPU cores)."
        )
    )
    write_results(
        args.results,
        f"Label-noise detection on BBC news ({args.noise:.0%} planted flips): views and the weighted ensemble",
        {"noise_rate": args.noise, "seeds": args.seeds, "n": sizes, "summary": summary, "runs": runs},
        "\n\n".join(sections),
        notes,
        script="noise",
    )


if __name__ == "__main__":
    main()
