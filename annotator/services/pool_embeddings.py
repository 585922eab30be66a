"""The pool's embeddings as a version scored it: one ``.npz`` file per scoring chunk beside the artifact.

Scoring writes them (services.scoring); the queue's diverse batches (services.queue_policy) and the pool drift
reference (services.drift_reference) read them. The queue reads the rows of its candidates only
(:func:`pool_embeddings_for`), so a rebuild holds a few thousand rows, not the pool.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annotator.models import ModelVersion
from annotator.serving import version_dir


def pool_embeddings_save(version: ModelVersion, index: int, ids: list[int], embeddings: np.ndarray,
                         key: str | None = None) -> None:
    """One scored chunk's embeddings (float16), beside the version's artifact; ``key`` names whose vectors they
    are (the predictor's embedding key), so a later version with the same key reads them by id."""
    directory = version_dir(version) / "pool-embeddings"
    directory.mkdir(parents=True, exist_ok=True)
    if key is not None and not (directory / "key.txt").is_file():
        (directory / "key.txt").write_text(key)
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


def pool_embeddings_for(version: ModelVersion, ids: Sequence[int]) -> np.ndarray | None:
    """The embeddings of ``ids`` as ``version`` scored them, one row per id in the order given (float16, shape
    ``(len(ids), d)``); None when any of them has none."""
    found, rows = pool_embedding_rows(version, ids)
    if rows is None or not found.all():
        return None
    return rows


def pool_embedding_rows(version: ModelVersion, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Which of ``ids`` ``version`` saved embeddings of (a bool per id) and those rows (float16, one per id in
    the order given, zeros where none; None when it saved none of them).

    Reads one chunk file at a time and, of each, the ids and then only the rows asked for: ``np.savez`` stores
    its arrays uncompressed, so a chunk's embeddings are memory-mapped in place and the rows copied out."""
    unique, inverse = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
    found = np.zeros(unique.size, dtype=bool)
    if unique.size == 0:
        return found, None
    out: np.ndarray | None = None
    for path in sorted((version_dir(version) / "pool-embeddings").glob("chunk-*.npz")):
        with np.load(path) as data:
            chunk_ids = data["ids"]
        where = np.minimum(np.searchsorted(unique, chunk_ids), unique.size - 1)
        hit = unique[where] == chunk_ids
        if not hit.any():
            continue
        rows = _stored_rows(path, "embeddings", np.flatnonzero(hit))
        if out is None:
            out = np.zeros((unique.size, rows.shape[1]), dtype=np.float16)
        out[where[hit]] = rows
        found[where[hit]] = True
    return found[inverse], None if out is None else out[inverse]


def pool_embeddings_key(version: ModelVersion) -> str | None:
    """The embedding key (training.predictor.embedding_key) of the vectors ``version``'s scoring saved."""
    path = version_dir(version) / "pool-embeddings" / "key.txt"
    return path.read_text().strip() if path.is_file() else None


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _stored_rows(path: Path, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the 2-d array ``name`` in the ``.npz`` at ``path``, without reading the rest of it."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as handle:
            # The member's local header: 30 bytes, then its name and extra field (their lengths at bytes 26-29).
            handle.seek(info.header_offset)
            local = handle.read(30)
            handle.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                        + int.from_bytes(local[28:30], "little"))
            reader = _HEADER_READERS.get(np.lib.format.read_magic(handle))
            header = reader(handle) if reader else None
            offset = handle.tell()
        if header is not None:
            shape, fortran, dtype = header
            if not fortran and len(shape) == 2 and not dtype.hasobject:
                stored = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                return np.array(stored[rows])
    with np.load(path) as data:
        return np.asarray(data[name][rows])
