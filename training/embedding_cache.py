"""The on-disk embedding cache: vectors keyed by an encoder's fingerprint (weights plus preprocessing) and
the text's sha256 (:func:`text_key`), so a frozen-encoder retrain only embeds new texts. Needs no PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def text_key(text: str) -> str:
    """sha256 hex digest of a text (the cache key; lone surrogates are hashed, not rejected)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()



class EmbeddingCache:
    """Append-only on-disk embedding store, one SQLite file (WAL mode).

    Rows are keyed by (encoder fingerprint, text sha256) and never updated, so concurrent readers
    and writers in several processes are safe: SQLite serializes the writers, ``INSERT OR IGNORE``
    makes a repeated write a no-op, and a reader sees only committed rows. A connection is opened
    per call, which keeps the object safe to share across threads and forked workers.

    Parameters
    ----------
    path:
        SQLite file; parent directories are created.
    """

    _CHUNK = 500  # stays well under SQLite's bound-variable limit

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " fingerprint TEXT NOT NULL, text_sha256 TEXT NOT NULL, dim INTEGER NOT NULL,"
                " vector BLOB NOT NULL, PRIMARY KEY (fingerprint, text_sha256)) WITHOUT ROWID"
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60.0)
        try:
            with conn:  # commits on success, rolls back on error
                yield conn
        finally:
            conn.close()

    def get_many(self, fingerprint: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors for the given text keys (missing keys are absent from the result).

        Returns
        -------
        dict[str, np.ndarray]
            Key to ``float32`` vector of shape ``(dim,)``.
        """
        found: dict[str, np.ndarray] = {}
        with self._connect() as conn:
            for start in range(0, len(keys), self._CHUNK):
                chunk = list(keys[start : start + self._CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT text_sha256, dim, vector FROM embeddings WHERE fingerprint = ? AND text_sha256 IN ({marks})",
                    [fingerprint, *chunk],
                )
                for key, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape != (dim,):
                        raise ValueError(f"corrupt cache row for {key}: expected {dim} floats")
                    found[key] = vector
        return found

    def put_many(self, fingerprint: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (shape ``(len(keys), dim)``); keys already present are left untouched."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(
                f"expected {len(keys)} vectors of shape (dim,), got array of shape {vectors.shape}"
            )
        with self._connect() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings (fingerprint, text_sha256, dim, vector) VALUES (?, ?, ?, ?)",
                [(fingerprint, k, vectors.shape[1], v.tobytes()) for k, v in zip(keys, vectors, strict=True)],
            )

    def count(self, fingerprint: str | None = None) -> int:
        """Number of stored vectors, for one fingerprint or all."""
        with self._connect() as conn:
            if fingerprint is None:
                row = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(*) FROM embeddings WHERE fingerprint = ?", [fingerprint]
                ).fetchone()
        return int(row[0])

