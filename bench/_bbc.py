"""Shared parts of the ML benchmarks: BBC news with cached MiniLM embeddings, and result writing.

Embeddings are cached in ``var/bench/embeddings.sqlite`` (keyed by encoder fingerprint and text hash),
so the first benchmark pays for embedding the 2,225 articles once and the others reuse them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from training.data import BBC_LABELS, load_bbc_news  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / "var" / "bench" / "embeddings.sqlite"


@dataclass
class BBCData:
    texts: list[str]
    labels: np.ndarray  # (n,) int indices into label_names
    label_names: list[str]
    embeddings: np.ndarray  # (n, 384) float32
    encoder: Any  # training.encoder.Encoder
    embed_seconds: float


def load_bbc(*, max_length: int = 256, pooling: str = "mean", limit_per_label: int | None = None) -> BBCData:
    """BBC texts, integer labels and (cached) MiniLM embeddings under the given preprocessing."""
    from training.embedding_cache import EmbeddingCache
    from training.encoder import Encoder, EncoderConfig

    texts, names = load_bbc_news(limit_per_label=limit_per_label)
    index = {name: i for i, name in enumerate(BBC_LABELS)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    encoder = Encoder(EncoderConfig(max_length=max_length, pooling=pooling))
    start = time.perf_counter()
    embeddings = encoder.embed_cached(texts, EmbeddingCache(CACHE), batch_size=32)
    return BBCData(texts, labels, list(BBC_LABELS), embeddings, encoder, time.perf_counter() - start)


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str, title: str, payload: dict[str, Any], table: str, notes: str = "", *, script: str | None = None
) -> None:
    """Write ``bench/results/<name>.json`` and the markdown section ``bench/results/<name>.md``.

    ``script`` names the benchmark script when it differs from ``name`` (e.g. a GPU run's results).
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join([f"bench/{script or name}.py", *sys.argv[1:]])
    payload = {"benchmark": name, "date": stamp, "command": command, "machine": info, **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float))
    section = [
        f"## {title}",
        "",
        f"Command: `{command}`  ",
        (
            f"Machine: {info['cpu_cores']} CPU cores and one {info['gpu']} GPU ({info['processor']}, "
            f"torch {info['torch']}); date: {stamp}."
            if info.get("gpu")
            else f"Machine: {info['cpu_cores']} CPU cores ({info['processor']}, torch {info['torch']}, "
            f"{info['torch_threads']} threads), shared with other work; date: {stamp}."
        ),
        "",
        table,
        "",
    ]
    if notes:
        section += [notes, ""]
    (RESULTS / f"{name}.md").write_text("\n".join(section))
    print(table)
    if notes:
        print()
        print(notes)
