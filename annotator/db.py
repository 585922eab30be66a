"""Database portability the services and the selectors share: which database this is, and long ``__in``
lists split to fit every database."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator
from typing import Any, TypeVar

from django.db import connection
from django.db.models import BinaryField, F, Func, Value

T = TypeVar("T")

# SQLite binds at most 999 parameters per statement in builds before 3.32 (32,766 since), and Django assumes
# 999 for it; a list of this many leaves room for the statement's other parameters.
IN_LIST_CHUNK = 900


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def in_chunks(values: Collection[T], size: int = IN_LIST_CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for ``__in`` lookups over lists that grow with the project."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _sha256(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return hashlib.sha256(value.encode() if isinstance(value, str) else bytes(value)).digest()


def register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give SQLite the SQL functions PostgreSQL has and queries rely on (``connection_created`` receiver):
    ``relabel_sha256(text or blob) -> blob`` (PostgreSQL's ``sha256``; the holdout's hash in SQL)."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("relabel_sha256", 1, _sha256, deterministic=True)


class IdDigest(Func):
    """sha256 of ``"<prefix><id>"`` in SQL (bytes), for a column of ids: PostgreSQL's ``sha256()``, SQLite's
    ``relabel_sha256`` (registered above). Python's ``hashlib.sha256(f"{prefix}{id}".encode())`` gives the same
    bytes."""

    output_field = BinaryField()

    def __init__(self, prefix: str, field: str) -> None:
        super().__init__(Value(prefix), F(field))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (prefix, prefix_params), (pk, pk_params) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"sha256(convert_to(({prefix})::text || ({pk})::text, 'UTF8'))", [*prefix_params, *pk_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (prefix, prefix_params), (pk, pk_params) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"relabel_sha256(({prefix}) || ({pk}))", [*prefix_params, *pk_params]
