"""Hugging Face ``datasets``: a Parquet file or a saved dataset directory in, Parquet out.

Import reads the columns ``text``, ``label`` (a ``ClassLabel`` whose integers are mapped through the
feature's names, or label names; a list of either for multi-label projects; ``-1`` or null for unlabeled)
or ``labels``, and optionally ``external_id``, ``source``, ``metadata`` (a JSON object or JSON text),
``observed_at`` and ``annotations`` (the history, as the export writes it). Any other column is kept in
each example's metadata under its own name. Export writes the same columns with a ``ClassLabel`` feature
named with the project's labels, so ``datasets.Dataset.from_parquet`` (or ``load_dataset("parquet")``)
gives a dataset ready to train on.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from annotator.errors import InvalidInput, Unavailable
from annotator.models import LabelClass, Project
from annotator.selectors import export as export_selectors
from annotator.services.files import ColumnMap, load_json

KNOWN = frozenset(ColumnMap.__dataclass_fields__)
IGNORED = frozenset({"id", "label_source", "latest_score"})  # export-only columns
MAX_ERRORS = 100
DEFAULT_COLUMNS = ColumnMap()


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise Unavailable("the datasets package is not installed; pip install datasets") from None
    return datasets


def max_unpacked_bytes() -> int:
    """The most an uploaded Parquet file may hold once decompressed (a small file can unpack to gigabytes)."""
    return 20 * int(settings.MAX_REQUEST_BYTES)


# --- import ---------------------------------------------------------------------------------------------
def parquet_rows(
    source: bytes | Path, *, columns: ColumnMap = DEFAULT_COLUMNS, max_rows: int | None = None,
    max_bytes: int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Import rows of a Parquet file and where each came from (``row 3``).

    ``max_rows`` and ``max_bytes`` (decompressed) are checked from the file's footer before anything is read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    datasets = _datasets()
    try:
        file = pq.ParquetFile(pa.BufferReader(source) if isinstance(source, bytes) else str(source))
        meta = file.metadata
        if max_rows is not None and meta.num_rows > max_rows:
            raise InvalidInput([{"message": f"{meta.num_rows:,} rows in one file; at most {max_rows:,}"}])
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if max_bytes is not None and unpacked > max_bytes:
            raise InvalidInput([{"message": f"the file unpacks to {unpacked / 2**20:,.0f} MB; at most "
                                            f"{max_bytes / 2**20:,.0f} MB"}])
        table = file.read()
    except (pa.ArrowException, OSError) as error:
        raise InvalidInput([{"field": "file", "message": f"not a readable Parquet file ({error})"}]) from None
    features = _features_of(datasets, table.schema)
    return _rows(table.to_pylist(), features, columns, [f"row {i}" for i in range(table.num_rows)])


def dataset_dir_rows(path: Path, *, columns: ColumnMap = DEFAULT_COLUMNS) -> tuple[list[dict[str, Any]], list[str]]:
    """Import rows of a directory written by ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``:
    every split, each row's split kept in its metadata as ``split``)."""
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise InvalidInput([{"field": "file", "message": f"{path} is not a dataset saved with save_to_disk "
                                                         f"({error})"}]) from None
    if isinstance(loaded, datasets.DatasetDict):
        rows: list[dict[str, Any]] = []
        where: list[str] = []
        errors: list[dict[str, Any]] = []
        for split, part in loaded.items():
            try:
                part_rows, part_where = _rows(part.to_list(), part.features, columns,
                                              [f"split {split}, row {i}" for i in range(part.num_rows)],
                                              start=len(rows))
            except InvalidInput as error:
                errors.extend(error.errors)
                continue
            for row in part_rows:
                row.setdefault("metadata", {}).setdefault("split", split)
            rows.extend(part_rows)
            where.extend(part_where)
        if errors:
            raise InvalidInput(errors[:MAX_ERRORS])
        return rows, where
    return _rows(loaded.to_list(), loaded.features, columns, [f"row {i}" for i in range(loaded.num_rows)])


def _features_of(datasets: Any, schema: Any) -> Any:
    try:
        return datasets.Features.from_arrow_schema(schema)
    except Exception:  # noqa: BLE001 - a foreign schema: read the plain values, as Arrow gives them
        return {}


class _Errors(list):
    def add(self, index: int, where: str, field: str, message: str) -> None:
        if len(self) < MAX_ERRORS:
            self.append({"index": index, "field": field, "message": f"{where}: {message}"})


def _rows(
    records: Iterable[dict[str, Any]], features: Any, columns: ColumnMap, where: list[str], *, start: int = 0,
) -> tuple[list[dict[str, Any]], list[str]]:
    names = {getattr(columns, name): name for name in ColumnMap.__dataclass_fields__}
    if not where:
        raise InvalidInput([{"message": "the dataset has no rows"}])
    errors = _Errors()
    rows: list[dict[str, Any]] = []
    for offset, record in enumerate(records):
        index = start + offset
        if columns.text not in record:
            raise InvalidInput([{"field": columns.text, "message": f"no {columns.text!r} column; the columns "
                                                                   f"are {', '.join(record)}"}])
        row: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for column, value in record.items():
            key = names.get(column, column)
            if key in IGNORED or value is None:
                continue
            if key in ("label", "labels"):
                value = _label_value(value, features.get(column), index, where[offset], column, errors)
                if value is None:
                    continue
                key = "labels" if isinstance(value, list) else "label"
            elif key == "metadata" and isinstance(value, str):
                try:
                    value = load_json(value)
                except ValueError as error:
                    errors.add(index, where[offset], column, f"{column} is not valid JSON ({error})")
                    continue
            elif key == "observed_at" and isinstance(value, dt.datetime):
                value = value.isoformat()
            elif key not in KNOWN:
                plain = _plain(value)
                if plain is _BINARY:
                    errors.add(index, where[offset], column, f"column {column!r} holds binary data, which "
                               "metadata cannot keep; drop the column")
                    continue
                extra[column] = plain
                continue
            row[key] = value
        if extra:
            metadata = row.get("metadata")
            if isinstance(metadata, dict):
                row["metadata"] = {**extra, **metadata}
            elif metadata is None:
                row["metadata"] = extra
        rows.append(row)
    if errors:
        raise InvalidInput(list(errors))
    return rows, where


def _class_label(datasets: Any, feature: Any) -> Any:
    if isinstance(feature, datasets.ClassLabel):
        return feature
    inner = getattr(feature, "feature", None)
    return inner if isinstance(inner, datasets.ClassLabel) else None


def _label_value(value: Any, feature: Any, index: int, where: str, column: str, errors: _Errors) -> Any:
    """Label name(s) of a label cell; None for unlabeled or after recording a problem."""
    class_label = _class_label(_datasets(), feature) if feature is not None else None

    def name(item: Any) -> str | None:
        if isinstance(item, bool) or not isinstance(item, int | str):
            errors.add(index, where, column, f"{column} must hold label names or ClassLabel integers")
            raise _Bad
        if isinstance(item, str):
            return item
        if class_label is None:
            errors.add(index, where, column, f"{column} is the integer {item} but the column has no ClassLabel "
                       "feature naming the classes; save the dataset with a ClassLabel feature or give names")
            raise _Bad
        if item == -1:
            return None
        if not 0 <= item < class_label.num_classes:
            errors.add(index, where, column, f"{column} {item} is outside the ClassLabel's "
                       f"{class_label.num_classes} classes")
            raise _Bad
        return class_label.names[item]

    try:
        if isinstance(value, list):
            names = [n for n in (name(item) for item in value) if n is not None]
            return names or None
        return name(value)
    except _Bad:
        return None


class _Bad(Exception):
    pass


_BINARY = object()


def _plain(value: Any) -> Any:
    """A metadata value as plain JSON (times as ISO 8601 text)."""
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in value.items()}
        return _BINARY if any(v is _BINARY for v in items.values()) else items
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return _BINARY if any(v is _BINARY for v in items) else items
    if isinstance(value, bytes | bytearray):
        return _BINARY
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


# --- export ---------------------------------------------------------------------------------------------
def export_features(project: Project) -> Any:
    """The ``datasets.Features`` of the export: the label as a ``ClassLabel`` with the project's names."""
    datasets = _datasets()
    names = list(LabelClass.objects.filter(project=project).order_by("position").values_list("name", flat=True))
    string = datasets.Value("string")
    label = {"labels": datasets.List(datasets.ClassLabel(names=names))} if project.is_multi_label else {
        "label": datasets.ClassLabel(names=names)}
    return datasets.Features({
        "id": datasets.Value("int64"), "external_id": string, "text": string, "source": string, **label,
        "label_source": string, "metadata": datasets.Json(), "observed_at": string,
        "annotations": datasets.List({"user": string, "kind": string, "labels": datasets.List(string),
                                      "note": string, "created_at": string}),
    })


def parquet_export(project: Project, sink: Path | BinaryIO) -> int:
    """Write the project to ``sink`` (a path or a binary file) as Parquet, a row group per chunk of
    examples; returns the row count."""
    import pyarrow.parquet as pq

    datasets = _datasets()
    features = export_features(project)
    names = features["labels"].feature.names if project.is_multi_label else features["label"].names
    position = {name: i for i, name in enumerate(names)}
    written = 0
    with pq.ParquetWriter(str(sink) if isinstance(sink, Path) else sink, features.arrow_schema) as writer:
        for chunk in export_selectors.export_row_chunks(project):
            columns: dict[str, list[Any]] = {name: [] for name in features}
            for row in chunk:
                for name in ("id", "external_id", "text", "source", "label_source", "metadata", "observed_at"):
                    columns[name].append(row[name])
                if project.is_multi_label:
                    columns["labels"].append([position[n] for n in row["labels"]])
                else:
                    columns["label"].append(position[row["labels"][0]] if row["labels"] else -1)
                columns["annotations"].append([
                    {"user": a["user"], "kind": a["kind"], "labels": a["labels"], "note": a["note"],
                     "created_at": a["created_at"]} for a in row["annotations"]])
            writer.write_table(datasets.Dataset.from_dict(columns, features=features).data.table)
            written += len(chunk)
        if not written:
            writer.write_table(features.arrow_schema.empty_table())
    return written
