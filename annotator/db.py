"""Database portability the services and the selectors share: which database this is, long ``__in`` lists
split to fit every database, and the few hand-written statements of the click paths.

The click paths (leasing the next queue item, answering it, token authentication) run for every click of
every annotator. Building a queryset costs the ORM about a millisecond of CPU per query (filters, joins and
ordering compiled to SQL each time), several times what PostgreSQL spends answering it, so those paths write
their SQL once (:func:`columns`, :func:`lock`) and read rows back with the converters the ORM would apply
(:func:`fetch`), so that JSON and, on SQLite, dates come back as the model fields hold them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import BinaryField, F, Field, Func, Model, Value

T = TypeVar("T")
M = TypeVar("M", bound=Model)

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


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def fields_of(model: type[Model], *names: str) -> tuple[Field, ...]:
    """The named concrete fields of ``model`` (every one without names), in the model's order, which is the
    order :meth:`Model.from_db` reads values in."""
    wanted = set(names)
    chosen = tuple(f for f in model._meta.concrete_fields if not names or f.name in wanted or f.attname in wanted)
    if names and len(chosen) != len(wanted):
        raise ValueError(f"{model.__name__} has no field among {sorted(wanted - {f.name for f in chosen})}")
    return chosen


def columns(alias: str, fields: Sequence[Field]) -> str:
    """``alias."column", ...`` for a SELECT list."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in fields)


def lock(*, of: str | None = None, skip_locked: bool = False, no_key: bool = False) -> str:
    """The row-locking clause this database has (PostgreSQL), or nothing (SQLite, whose writing transactions
    run one at a time: ``transaction_mode`` IMMEDIATE in the settings)."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    clause = "FOR NO KEY UPDATE" if no_key and features.has_select_for_no_key_update else "FOR UPDATE"
    if of and features.has_select_for_update_of:
        clause += f" OF {of}"
    if skip_locked and features.has_select_for_update_skip_locked:
        clause += " SKIP LOCKED"
    return clause


@functools.cache
def _converters(vendor: str, fields: tuple[Field | None, ...]) -> tuple[tuple[int, tuple[Callable, ...], Any], ...]:
    out = []
    for i, field in enumerate(fields):
        if field is None:
            continue
        col = field.get_col(field.model._meta.db_table)
        found = tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        if found:
            out.append((i, found, col))
    return tuple(out)


def fetch(sql: str, params: Sequence[Any] | dict[str, Any], fields: Sequence[Field | None]) -> list[list[Any]]:
    """Run ``sql`` and return its rows, each value converted as the ORM converts the field of its position
    (None: a column that is no field, returned as the database gives it)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [list(row) for row in cursor.fetchall()]
    converters = _converters(connection.vendor, tuple(fields))
    if converters:
        for row in rows:
            for i, funcs, col in converters:
                value = row[i]
                for convert in funcs:
                    value = convert(value, col, connection)
                row[i] = value
    return rows


def instance(model: type[M], fields: Sequence[Field], values: Sequence[Any]) -> M:
    """A model instance from converted ``values`` of ``fields`` (in model order); the other fields are
    deferred, so reading one later costs a query instead of giving a wrong value."""
    return model.from_db(connection.alias, [f.attname for f in fields], list(values))


def update(obj: Model, **values: Any) -> None:
    """``UPDATE`` one row by primary key with these field values (by field name; a related object or its id
    for a foreign key), prepared as ``save(update_fields=...)`` prepares them, and set them on ``obj``."""
    model = type(obj)
    names = tuple(sorted(values))
    sql, fields = _update_sql(connection.vendor, model, names)
    params = []
    for name, field in zip(names, fields, strict=True):
        value = values[name]
        if field.is_relation and isinstance(value, Model):
            value = value.pk
        params.append(field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, obj.pk])
    for name, value in values.items():
        setattr(obj, name, value)


@functools.cache
def _update_sql(vendor: str, model: type[Model], names: tuple[str, ...]) -> tuple[str, tuple[Field, ...]]:
    quote = connection.ops.quote_name
    fields = tuple(model._meta.get_field(name) for name in names)
    sets = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    return f"UPDATE {table(model)} SET {sets} WHERE {quote(model._meta.pk.column)} = %s", fields


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
