"""Seconds of the data-health checks (training.health) on synthetic embeddings.

    .venv/bin/python bench/health.py --n 5000 50000 [--threads 2] [--json bench/results/health.json]

Synthetic data shaped like sentence embeddings: 384 dimensions, 20 topic clusters whose members have cosine
similarity around 0.4 to each other, 1% planted near-duplicates (a copy plus a little noise, cosine about
0.99) with a flipped label, 0.5% exact repeats of a text under another label, a small class and a few
far-away points. ``--threads`` caps the BLAS and OpenMP threads (set before numpy loads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic(n: int, *, dim: int = 384, classes: int = 5, seed: int = 0):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(20, dim))
    topic = rng.integers(0, 20, n)
    x = topics[topic] + rng.normal(scale=1.2, size=(n, dim))
    labels = topic % classes
    labels[rng.random(n) < 0.004] = classes  # a tiny class
    texts = [f"synthetic text {i} about topic {t}" for i, t in enumerate(topic)]
    planted = rng.choice(n, size=(n // 100, 2), replace=False)
    x[planted[:, 1]] = x[planted[:, 0]] + rng.normal(scale=0.08, size=(len(planted), dim))
    labels[planted[:, 1]] = (labels[planted[:, 0]] + 1) % classes
    repeats = rng.choice(n, size=(n // 200, 2), replace=False)
    for a, b in repeats:
        texts[b] = texts[a].upper() + "!"
        x[b] = x[a]
        labels[b] = (labels[a] + 2) % classes
    far = rng.choice(n, size=5, replace=False)
    x[far] = rng.normal(scale=30, size=(5, dim))
    probs = rng.dirichlet(np.ones(classes + 1), size=n)
    return texts, labels, x.astype(np.float32), probs, [f"class{j}" for j in range(classes + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    from training.duplicates import conflicting_duplicates
    from training.health import dataset_health

    results = []
    for n in args.n:
        texts, labels, x, probs, names = synthetic(n)
        start = time.perf_counter()
        groups = conflicting_duplicates(texts, labels.tolist(), x)
        conflicts_s = time.perf_counter() - start
        start = time.perf_counter()
        health = dataset_health(x, probs, labels, names)
        health_s = time.perf_counter() - start
        row = {"n": n, "threads": args.threads or os.cpu_count(), "conflicts_seconds": round(conflicts_s, 2),
               "conflict_groups": len(groups), "health_seconds": round(health_s, 2),
               "health_parts": health["seconds"], "method": health["method"],
               "outliers_flagged": health["outliers"]["n_flagged"], "too_small": health["too_small"]}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
