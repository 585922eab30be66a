"""Scoring throughput: the whole scoring path vs the raw encoder forward, in the same run.

    python bench/scoring.py [--texts 256] [--repeats 3] [--batch-size 64] [--max-length 256]

"Scoring" is what a scoring worker does per chunk of pool or production texts: tokenize, run the
encoder, apply the head and the calibration temperature (``training.artifacts.Predictor.predict``,
with and without the token statistics that feed drift), then compute the queue's uncertainty scores
(``training.query.uncertainty_summary``: confidence, entropy, margin, least confidence). "Raw" is
``Encoder.embed`` alone (tokenize + forward + pooling) on the same texts and batch size. Runs
alternate raw / scoring so that load from other processes hits both alike; the median is reported.
Target: scoring throughput >= 0.9 x raw.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _bbc import load_bbc, markdown_table, write_results
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from training.artifacts import Predictor
from training.calibration import fit_temperature
from training.query import uncertainty_summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    data = load_bbc()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.texts))
    train, scored = order[: len(order) // 2], order[len(order) // 2 :][: args.texts]
    texts = [data.texts[i] for i in scored]

    # A real head: logistic regression on the cached embeddings, copied into the predictor's linear layer.
    model = LogisticRegression(C=10.0, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.embeddings[train], data.labels[train])
    head = torch.nn.Linear(data.embeddings.shape[1], len(data.label_names))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(model.coef_.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(model.intercept_.astype(np.float32)))
    temperature = fit_temperature(model.decision_function(data.embeddings[train]), data.labels[train])
    predictor = Predictor(
        encoder=data.encoder,
        head=head,
        label_names=data.label_names,
        task="single_label",
        temperature=temperature,
    )
    encoder = data.encoder

    def raw() -> None:
        encoder.embed(texts, batch_size=args.batch_size)

    def scoring(with_token_stats: bool) -> None:
        prediction = predictor.predict(texts, batch_size=args.batch_size, with_token_stats=with_token_stats)
        uncertainty_summary(prediction.probs)

    runs: dict[str, list[float]] = {"raw": [], "scoring": [], "scoring_no_token_stats": []}
    raw()  # warm-up (allocator, thread pool)
    for repeat in range(args.repeats):
        for name, fn in (
            ("raw", raw),
            ("scoring", lambda: scoring(True)),
            ("scoring_no_token_stats", lambda: scoring(False)),
        ):
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
        print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items()), flush=True)

    median = {name: float(np.median(values)) for name, values in runs.items()}
    throughput = {name: args.texts / seconds for name, seconds in median.items()}
    ratio = throughput["scoring"] / throughput["raw"]
    ratio_no_stats = throughput["scoring_no_token_stats"] / throughput["raw"]
    table = markdown_table(
        ["path", "median seconds", "texts/s", "vs raw forward"],
        [
            ["raw encoder forward (tokenize + forward + pool)", median["raw"], throughput["raw"], 1.0],
            [
                "scoring (+ head, temperature, uncertainty scores, token stats)",
                median["scoring"],
                throughput["scoring"],
                ratio,
            ],
            [
                "scoring without token stats",
                median["scoring_no_token_stats"],
                throughput["scoring_no_token_stats"],
                ratio_no_stats,
            ],
        ],
    )
    notes = (
        f"{args.texts} BBC articles, MiniLM-L6 fp32 (PyTorch), max_length {encoder.config.max_length}, "
        f"batch size {args.batch_size}, median of {args.repeats} alternating runs. Target: scoring >= 0.9 x raw; "
        f"measured {ratio:.3f} ({'met' if ratio >= 0.9 else 'not met'})."
    )
    write_results(
        "scoring",
        "Scoring throughput vs raw encoder forward",
        {
            "texts": args.texts,
            "batch_size": args.batch_size,
            "max_length": encoder.config.max_length,
            "runs_seconds": runs,
            "median_seconds": median,
            "texts_per_second": throughput,
            "ratio": ratio,
            "ratio_without_token_stats": ratio_no_stats,
        },
        table,
        notes,
    )


if __name__ == "__main__":
    main()
