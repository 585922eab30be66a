"""Bulk writes at COPY speed on PostgreSQL, bulk_create elsewhere (the embedded SQLite default). Long
``__in`` lists are split by ``annotator.db.in_chunks``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import connection, models

from annotator.db import is_postgres


def allocate_ids(model: type[models.Model], n: int) -> list[int]:
    """Take ``n`` ids from the table's sequence (PostgreSQL) so rows can be COPYed with known ids."""
    if n == 0:
        return []
    table = model._meta.db_table
    pk = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", [table, pk, n])
        return [row[0] for row in cursor.fetchall()]


class JSONText(str):
    """A JSON document already serialized (and validated): written as is, never encoded twice."""


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Insert plain tuples (values in ``columns`` order; JSON fields as dicts or lists) and return their ids.

    PostgreSQL: ids from the sequence, then one COPY. Other databases: ``bulk_create``.
    """
    if not rows:
        return []
    if not is_postgres():
        decoded = [tuple(json.loads(v) if isinstance(v, JSONText) else v for v in row) for row in rows]
        objects = [model(**dict(zip(columns, row, strict=True))) for row in decoded]
        model.objects.bulk_create(objects, batch_size=2000)
        if "created_at" in columns:  # auto_now_add replaced the given times on insert
            at = list(columns).index("created_at")
            for obj, row in zip(objects, rows, strict=True):
                obj.created_at = row[at]
            model.objects.bulk_update(objects, ["created_at"], batch_size=2000)
        return [obj.pk for obj in objects]
    ids = allocate_ids(model, len(rows))
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(model._meta.get_field(c).column) for c in ("id", *columns))
    # COPY goes through psycopg's own cursor: wrap it so its errors become Django's (an IntegrityError the
    # import answers 409 to, an OperationalError of a lost connection) and Django knows the connection broke.
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for pk, row in zip(ids, rows, strict=True):
            copy.write_row((pk, *(_copy_value(v) for v in row)))
    return ids


def analyze_if_stale(model: type[models.Model], *, share: float = 0.5, floor: int = 20_000) -> bool:
    """Refresh PostgreSQL's statistics of a table that a bulk load changed a lot since its last ANALYZE.

    Autovacuum lags behind fast bulk loads; with stale statistics the planner believes a project holds a
    few thousand rows and looks up ten thousand external ids with a scan of the whole project instead of
    the unique index, so each batch gets slower as the project grows. Runs when the rows changed since the
    last analysis exceed ``share`` of the table (at least ``floor``): a handful of times over a
    million-row load.
    """
    if not is_postgres():
        return False
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.n_mod_since_analyze, GREATEST(c.reltuples, 0) FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s",
            [table],
        )
        row = cursor.fetchone()
        if row is None or row[0] < max(row[1] * share, floor):
            return False
        cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    return True
