"""Rows for bulk requests: from dicts, from a pandas DataFrame (pandas is never imported by this module:
a DataFrame can only come from a program that imported it), and from CSV or JSONL files."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

# The fields an example row may carry (docs/api.md, "Bulk import"); export-only fields are accepted too.
EXAMPLE_FIELDS = ("text", "external_id", "label", "labels", "source", "metadata", "observed_at", "annotations")
SAMPLE_FIELDS = ("text", "external_id", "metadata", "observed_at")
# A cell a spreadsheet would run as a formula, after the apostrophes the server's CSV export adds to guard it.
_CSV_FORMULA = re.compile(r"'*[=+\-@\t\r]")
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


def is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    pandas = sys.modules.get("pandas")
    if pandas is not None and not isinstance(value, list | tuple | dict | str):
        try:
            return bool(pandas.isna(value))
        except (TypeError, ValueError):
            return False
    return False


def jsonable(value: Any) -> Any:
    """numpy scalars, arrays, timestamps and dates as JSON values (DataFrame cells are often those)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy scalar or array
        return jsonable(value.tolist())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return value


def dataframe_rows(frame: Any, *, fields: tuple[str, ...], metadata_columns: str | list[str] = "rest") -> Iterator[dict[str, Any]]:
    """One row per DataFrame line. Missing cells (NaN, None, NaT) are left out, so a column of labels with
    gaps imports the gaps unlabeled. Columns that are not API fields go into ``metadata`` (``"rest"``), the
    named ones only (a list), or nowhere (``[]``)."""
    columns = [str(c) for c in frame.columns]
    if metadata_columns == "rest":
        extra = [c for c in columns if c not in fields]
    else:
        extra = [c for c in metadata_columns if c in columns]
    for record in frame.to_dict(orient="records"):
        record = {str(k): v for k, v in record.items()}
        row: dict[str, Any] = {}
        for name in fields:
            if name in record and not _is_missing(record[name]):
                row[name] = jsonable(record[name])
        extras = {name: jsonable(record[name]) for name in extra if not _is_missing(record.get(name))}
        if extras:
            row["metadata"] = {**extras, **(row.get("metadata") or {})}
        yield row


def as_rows(rows: Any, *, fields: tuple[str, ...], metadata_columns: str | list[str] = "rest") -> Iterable[dict[str, Any]]:
    """Rows from an iterable of dicts (or of strings: texts) or a DataFrame."""
    if is_dataframe(rows):
        return dataframe_rows(rows, fields=fields, metadata_columns=metadata_columns)
    if isinstance(rows, dict | str | bytes):
        raise TypeError("rows must be an iterable of dicts (or texts) or a pandas DataFrame, not a single "
                        f"{type(rows).__name__}")
    return ({"text": row} if isinstance(row, str) else jsonable(row) for row in rows)


def batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- files (the CLI) -------------------------------------------------------------------------------------
def guess_format(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith((".csv", ".tsv")):
        return "csv"
    raise ValueError(f"cannot tell the format of {name!r}; name it .csv or .jsonl, or pass --format")


def read_jsonl(text: str) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (or one JSON array). Only "\\n" ends a line, as on the server."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not all(isinstance(row, dict) for row in value):
            raise ValueError("a JSON array of rows must hold objects")
        yield from value
        return
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number}: malformed JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(value, dict):
            raise ValueError(f"line {number}: each line must be a JSON object")
        yield value


def read_csv(text: str) -> Iterator[dict[str, Any]]:
    """Rows of a CSV file the way the server's own import reads it: the delimiter guessed among , ; tab,
    ``labels`` split on "|", ``metadata`` and ``annotations`` parsed as JSON, empty cells left out, and the
    apostrophe the export puts before formula-like cells taken off."""
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter if text.strip() else ","
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=csv.excel, delimiter=delimiter)
    if "text" not in (reader.fieldnames or []):
        raise ValueError(f"line 1: no 'text' column; the header has {', '.join(reader.fieldnames or []) or 'nothing'}")
    for record in reader:
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key is None:
                raise ValueError(f"line {reader.line_num}: more cells than header columns")
            if not value or key not in EXAMPLE_FIELDS:
                continue
            if value.startswith("'") and _CSV_FORMULA.match(value):
                value = value[1:]
            if key in ("metadata", "annotations"):
                try:
                    row[key] = json.loads(value)
                except json.JSONDecodeError as error:
                    raise ValueError(f"line {reader.line_num}: {key} is not valid JSON ({error.msg})") from None
            elif key == "labels":
                row[key] = [part for part in value.split("|") if part]
            else:
                row[key] = value
        if "labels" in row and "label" in row:
            row.pop("labels" if len(row["labels"]) <= 1 else "label")
        yield row


def read_file(path: str, fmt: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a CSV or JSONL file (``-``: standard input, JSONL unless ``fmt`` says csv)."""
    if path == "-":
        text = sys.stdin.read()
        fmt = fmt or "jsonl"
    else:
        text = Path(path).read_bytes().decode("utf-8-sig")
        fmt = fmt or guess_format(path)
    return read_csv(text) if fmt == "csv" else read_jsonl(text)


def label_body(label: str | None, labels: list[str] | None) -> dict[str, Any]:
    """The label part of an annotation's body: ``label`` for single-label projects, ``labels`` for multi-label."""
    if (label is None) == (labels is None):
        raise ValueError("give exactly one of label (single-label projects) or labels (multi-label)")
    return {"label": label} if label is not None else {"labels": list(labels or [])}
