"""Training modes on BBC news by label budget: macro-F1 (mean ± std over seeds) and wall time.

    python bench/train_modes.py [--modes logreg frozen gradual full lora] [--budgets 20 50 100 250 all]
                                [--seeds 0 1 2] [--big-budget-seeds 0] [--max-length 64]
                                [--epochs 3] [--all-epochs 1] [--test-per-label 40] [--threads 1]
                                [--max-minutes 20]

For each budget and seed a stratified sample of that many labeled articles is drawn from a pool
(the BBC corpus minus a fixed stratified 20% test split); ``train_classifier`` holds out 15% of it
for validation / early stopping, and the model is scored on ``--test-per-label`` test articles per
class. ``logreg`` is the baseline: scikit-learn LogisticRegression on frozen MiniLM embeddings of the
whole sample. Budgets from 250 up (and ``all``) use ``--big-budget-seeds`` to keep a default run on
2 CPU cores near 20 minutes; ``--max-minutes`` skips what is left once the budget is spent (marked
in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from _bbc import CACHE, RESULTS, markdown_table, write_results
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from training.data import BBC_LABELS, load_bbc_news, stratified_sample, stratified_split
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder, EncoderConfig
from training.modes import FINE_TUNE_MODES
from training.modes import MODES as TRAINING_MODES
from training.train import TrainConfig, train_classifier

# The training modes plus a scikit-learn logistic regression on frozen embeddings as the floor.
MODES = ["logreg", *(mode for mode in TRAINING_MODES if mode != "auto")]


def run_one(
    mode: str,
    train_texts: list[str],
    train_labels: list[str],
    test_texts: list[str],
    y_test: np.ndarray,
    *,
    seed: int,
    epochs: int,
    args: argparse.Namespace,
    encoder: Encoder,
    cache: EmbeddingCache,
) -> dict[str, Any]:
    start = time.perf_counter()
    if mode == "logreg":
        x = encoder.embed_cached(train_texts, cache)
        clf = LogisticRegression(max_iter=2000).fit(x, [BBC_LABELS.index(y) for y in train_labels])
        predicted = clf.predict(encoder.embed_cached(test_texts, cache))
        extra: dict[str, Any] = {}
    else:
        config = TrainConfig(
            mode=mode,
            encoder=EncoderConfig(max_length=args.max_length),
            epochs=epochs,
            seed=seed,
            linear_probe=not args.no_linear_probe,
            device=args.device,
        )
        model = train_classifier(
            train_texts, train_labels, BBC_LABELS, config=config, cache=cache
        )
        if mode == "frozen":  # the encoder is unchanged: test embeddings come from the cache
            logits = model.logits_from_embeddings(encoder.embed_cached(test_texts, cache))
        else:
            logits = model.predict_logits(test_texts)
        predicted = logits.argmax(axis=1)
        extra = {"best_epoch": model.best_epoch, "val_macro_f1": model.val_metrics["macro_f1"]}
    return {
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "seconds": time.perf_counter() - start,
        **extra,
    }


def _budget_order(budget: str) -> float:
    return float("inf") if budget == "all" else float(budget)


def report(
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    *,
    n_test: int,
    n_pool: int,
    started: float,
    load_before: tuple[float, float, float],
    previous: dict[str, Any],
    done: bool,
) -> None:
    """Write the JSON and markdown (after every run, so an interrupted benchmark keeps its numbers)."""
    import torch

    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    device_name = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    modes, budgets = list(args.modes), sorted(args.budgets, key=_budget_order)
    if previous:
        kept = [r for r in previous["runs"] if r["mode"] not in args.modes]
        runs = kept + list(runs)
        modes = [m for m in MODES if any(r["mode"] == m for r in runs)]
        budgets = sorted(dict.fromkeys([*previous["settings"]["budgets"], *args.budgets]), key=_budget_order)

    summary: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        for budget_arg in budgets:
            scores = [r["macro_f1"] for r in runs if r["mode"] == mode and r["budget"] == budget_arg]
            seconds = [r["seconds"] for r in runs if r["mode"] == mode and r["budget"] == budget_arg]
            if scores:
                summary.setdefault(mode, {})[budget_arg] = {
                    "mean": float(np.mean(scores)),
                    "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                    "n_seeds": len(scores),
                    "mean_seconds": float(np.mean(seconds)),
                }

    def cell(mode: str, budget: str) -> str:
        s = summary.get(mode, {}).get(budget)
        if s is None:
            return "not run"
        spread = f" ± {s['std']:.3f}" if s["n_seeds"] > 1 else " (1 seed)"
        return f"{s['mean']:.3f}{spread}, {s['mean_seconds']:.0f} s"

    headers = ["mode", *[f"{b} labels" for b in budgets]]
    rows = [[mode, *[cell(mode, b) for b in budgets]] for mode in modes]
    notes = (
        f"Macro-F1 on {n_test} fixed test articles; mean ± sample std over seeds {args.seeds} "
        f"(budgets >= {args.big_budget} and 'all' ({n_pool} articles): seeds {args.big_budget_seeds}); "
        f"each seed draws its own stratified sample. Time = training plus scoring the test split, per run. "
        f"max_length {args.max_length} for every mode"
        + (
            " (not 256: fine-tuning at 256 tokens on 2 shared CPU cores does not fit the time budget)"
            if args.max_length < 256 and not on_gpu
            else ""
        )
        + f", {args.epochs} fine-tuning epochs ({args.all_epochs} for 'all'), "
        f"fine-tuning {'after' if not args.no_linear_probe else 'without'} a linear probe (LP-FT; the probe is "
        f"epoch 0 for early stopping), training device {device_name}, "
        f"other settings TrainConfig defaults (frozen head: up to 100 epochs, patience 20). logreg = "
        f"LogisticRegression(C=1) on the frozen embeddings of the whole sample. Fine-tuning modes ran on "
        f"budgets {args.finetune_budgets} only ('not run' elsewhere). torch threads {args.threads}; "
        f"load average at start {load_before[0]:.1f}. Total wall time {time.perf_counter() - started:.0f} s."
        + (f" Skipped by --max-minutes: {len(skipped)} runs." if skipped else "")
        + (
            ""
            if done
            else " PARTIAL: the benchmark was still running (or was interrupted) when this was written."
        )
        + (
            f" Rows other than {', '.join(args.modes)} come from `{previous['command']}` ({previous['date']})."
            if previous
            else ""
        )
    )
    write_results(
        args.results,
        "Training modes by label budget (BBC news, MiniLM-L6)",
        {
            "settings": vars(args),
            "runs": runs,
            "complete": done,
            "summary": summary,
            "skipped": skipped + [s for s in previous.get("skipped", []) if s["mode"] not in args.modes],
            "merged_from": (
                {k: previous[k] for k in ("command", "date", "settings", "load_average_start")}
                if previous
                else None
            ),
            "n_test": n_test,
            "n_pool": n_pool,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg(),
        },
        markdown_table(headers, rows),
        notes,
        script="train_modes",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--budgets", nargs="+", default=["20", "50", "100", "250", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--big-budget-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--big-budget", type=int, default=250, help="budgets >= this use --big-budget-seeds")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--all-epochs", type=int, default=1, help="fine-tuning epochs for the 'all' budget")
    parser.add_argument("--test-per-label", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--finetune-budgets",
        nargs="+",
        default=["20", "50", "100", "250"],
        help="budgets the fine-tuning modes run on (add 'all': ~5 min per epoch and mode on 2 shared cores)",
    )
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--device", default="auto", help="training device: auto (CUDA when available), cpu, cuda")
    parser.add_argument("--no-linear-probe", action="store_true", help="fine-tune from a random head (no LP-FT)")
    parser.add_argument("--results", default="train_modes", help="results name under bench/results/")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the other modes' runs from bench/results/train_modes.json and replace only --modes",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()
    texts, labels = load_bbc_news()
    pool, test = stratified_split(labels, 0.2, seed=0)
    test = test[stratified_sample([labels[i] for i in test], 5 * args.test_per_label, seed=0)]
    test_texts = [texts[i] for i in test]
    y_test = np.array([BBC_LABELS.index(labels[i]) for i in test])
    pool_labels = [labels[i] for i in pool]
    encoder = Encoder(EncoderConfig(max_length=args.max_length))
    cache = EmbeddingCache(CACHE)

    previous: dict[str, Any] = {}
    if args.update and (RESULTS / f"{args.results}.json").is_file():
        previous = json.loads((RESULTS / f"{args.results}.json").read_text())
    context: dict[str, Any] = {
        "previous": previous,
        "n_test": len(test),
        "n_pool": len(pool),
        "started": started,
        "load_before": load_before,
    }
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for budget_arg in args.budgets:
        budget = len(pool) if budget_arg == "all" else int(budget_arg)
        seeds = args.big_budget_seeds if budget >= args.big_budget else args.seeds
        for mode in args.modes:
            if mode in FINE_TUNE_MODES and budget_arg not in args.finetune_budgets:
                continue
            epochs = args.all_epochs if budget_arg == "all" else args.epochs
            for seed in seeds:
                if time.perf_counter() - started > args.max_minutes * 60:
                    skipped.append({"mode": mode, "budget": budget_arg, "seed": seed})
                    continue
                sample = pool[stratified_sample(pool_labels, budget, seed=seed)]
                result = run_one(
                    mode,
                    [texts[i] for i in sample],
                    [labels[i] for i in sample],
                    test_texts,
                    y_test,
                    seed=seed,
                    epochs=epochs,
                    args=args,
                    encoder=encoder,
                    cache=cache,
                )
                runs.append(
                    {"mode": mode, "budget": budget_arg, "seed": seed, "n_labeled": len(sample), **result}
                )
                print(
                    f"{mode:8s} budget {budget_arg:>4s} seed {seed}: macro-F1 {result['macro_f1']:.3f} "
                    f"({result['seconds']:.0f} s)",
                    flush=True,
                )
                report(args, runs, skipped, done=False, **context)

    report(args, runs, skipped, done=True, **context)


if __name__ == "__main__":
    main()
