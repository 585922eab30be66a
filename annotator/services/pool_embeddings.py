"""The pool's embeddings as a version scored it: one ``.npz`` file per scoring chunk beside the artifact.

Scoring writes them (services.scoring); the queue's diverse batches (services.queue_policy) and the pool drift
reference (services.drift_reference) read them.
"""

from __future__ import annotations

import numpy as np

from annotator.models import ModelVersion
from annotator.serving import version_dir


def pool_embeddings_save(version: ModelVersion, index: int, ids: list[int], embeddings: np.ndarray) -> None:
    """One scored chunk's embeddings (float16), beside the version's artifact."""
    directory = version_dir(version) / "pool-embeddings"
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"chunk-{index:05d}.npz", ids=np.asarray(ids, dtype=np.int64),
             embeddings=embeddings.astype(np.float16))


def load_pool_embeddings(version: ModelVersion) -> dict[int, np.ndarray]:
    """Every chunk's embeddings of ``version``, by example id (empty when scoring saved none)."""
    directory = version_dir(version) / "pool-embeddings"
    out: dict[int, np.ndarray] = {}
    for path in sorted(directory.glob("chunk-*.npz")):
        with np.load(path) as data:
            out.update(zip(data["ids"].tolist(), data["embeddings"], strict=True))
    return out

