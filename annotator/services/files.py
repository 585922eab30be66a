"""Reading CSV and JSONL files into import rows, and previewing them; problems are reported with their line
number."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from annotator.csv_cells import csv_unescape
from annotator.errors import InvalidInput

FORMATS = ("csv", "jsonl")
# The csv module refuses cells over 128 KB; a project may allow texts of up to a million characters, and
# the request body limit bounds what a cell can be anyway.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


@dataclass(frozen=True)
class ColumnMap:
    text: str = "text"
    label: str = "label"
    external_id: str = "external_id"
    labels: str = "labels"
    source: str = "source"
    metadata: str = "metadata"
    observed_at: str = "observed_at"
    annotations: str = "annotations"


def guess_format(filename: str) -> str:
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith((".csv", ".tsv")):
        return "csv"
    raise InvalidInput([{"field": "format", "message": f"cannot tell the format of {filename!r}; use .csv or .jsonl"}])


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM); a broken byte is reported with its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise InvalidInput([{
            "line": line, "field": "encoding",
            "message": f"line {line}, column {column}: not valid UTF-8 (byte 0x{data[error.start]:02x}); "
                       "save the file as UTF-8 and try again",
        }]) from None


def parse_file(data: bytes, fmt: str, columns: ColumnMap = ColumnMap()) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows for ``examples_import`` and the file line each came from."""
    if fmt not in FORMATS:
        raise InvalidInput([{"field": "format", "message": f"format must be one of {', '.join(FORMATS)}"}])
    text = decode(data)
    return _parse_jsonl(text, columns) if fmt == "jsonl" else _parse_csv(text, columns)


def _rename(raw: dict[str, Any], columns: ColumnMap) -> dict[str, Any]:
    mapping = {getattr(columns, name): name for name in ColumnMap.__dataclass_fields__}
    return {mapping.get(key, key): value for key, value in raw.items()}


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL file. Only "\n" (or "\r\n") ends a line: JSON strings may hold U+2028, U+0085
    and the other characters ``str.splitlines`` would also break at, and line numbers must match an editor's."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(value: str) -> Any:
    """Strict JSON (no NaN or Infinity); ValueError with a readable reason for anything else."""
    try:
        return json.loads(value, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"{error.msg}, column {error.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_jsonl(text: str, columns: ColumnMap) -> tuple[list[dict[str, Any]], list[int]]:
    rows, lines, errors = [], [], []
    for number, line in enumerate(jsonl_lines(text), 1):
        if not line.strip():
            continue
        try:
            value = load_json(line)
        except ValueError as error:
            errors.append({"line": number, "message": f"line {number}: malformed JSON ({error})"})
            continue
        if not isinstance(value, dict):
            errors.append({"line": number, "message": f"line {number}: each line must be a JSON object"})
            continue
        rows.append(_rename(value, columns))
        lines.append(number)
    if errors:
        raise InvalidInput(errors[:100])
    if not rows:
        raise InvalidInput([{"message": "the file has no rows"}])
    return rows, lines


def _parse_csv(text: str, columns: ColumnMap) -> tuple[list[dict[str, Any]], list[int]]:
    # Only the delimiter is guessed: the sniffer's quote guesses ("'" for texts like 'this' one, no doubled
    # quotes when the sample has none) corrupt or refuse ordinary files; quoting is always RFC 4180.
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter if text.strip() else ","
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=csv.excel, delimiter=delimiter)
    header = reader.fieldnames or []
    if columns.text not in header:
        raise InvalidInput([{"line": 1, "field": columns.text,
                             "message": f"line 1: no {columns.text!r} column; the header has {', '.join(header) or 'nothing'}"}])
    rows, lines, errors = [], [], []
    try:
        for record in reader:
            number = reader.line_num
            if None in record:
                errors.append({"line": number, "message": f"line {number}: more cells than header columns"})
                continue
            row: dict[str, Any] = {}
            for key, value in _rename(record, columns).items():
                if value is None or value == "" or key not in ColumnMap.__dataclass_fields__:
                    continue
                value = csv_unescape(value)
                if key in ("metadata", "annotations"):
                    try:
                        value = load_json(value)
                    except ValueError as error:
                        errors.append({"line": number, "field": key,
                                       "message": f"line {number}: {key} is not valid JSON ({error})"})
                        continue
                elif key == "labels":
                    value = [part for part in value.split("|") if part]
                row[key] = value
            if "labels" in row and "label" in row:
                row.pop("labels" if len(row["labels"]) <= 1 else "label")
            rows.append(row)
            lines.append(number)
    except csv.Error as error:
        raise InvalidInput([{"line": reader.line_num, "message": f"line {reader.line_num}: {error}"}]) from None
    if errors:
        raise InvalidInput(errors[:100])
    if not rows:
        raise InvalidInput([{"message": "the file has no rows"}])
    return rows, lines


# --- preview -------------------------------------------------------------------------------------------
PREVIEW_ROWS = 8


@dataclass
class FilePreview:
    columns: list[str]
    rows: list[list[str]]
    n_lines: int
    problems: list[dict[str, Any]] = field(default_factory=list)


def file_preview(data: bytes, fmt: str, *, n: int = PREVIEW_ROWS) -> FilePreview:
    """The columns and first ``n`` rows of an uploaded CSV or JSONL file, as text cells.

    Raises InvalidInput (with the line) for a file that is not UTF-8; a malformed row becomes a problem
    of the preview, and the import itself reports every problem.
    """
    text = decode(data)
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if fmt == "jsonl":
        return _jsonl_preview(text, n, n_lines)
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter if text.strip() else ","
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), dialect=csv.excel, delimiter=delimiter)
    try:
        header = next(reader, [])
        rows = []
        for record in reader:
            rows.append([cell(v) for v in record])
            if len(rows) == n:
                break
    except csv.Error as error:
        raise InvalidInput([{"line": reader.line_num, "message": f"line {reader.line_num}: {error}"}]) from None
    return FilePreview(columns=header, rows=rows, n_lines=n_lines)


def _jsonl_preview(text: str, n: int, n_lines: int) -> FilePreview:
    columns: list[str] = []
    records: list[dict[str, Any]] = []
    problems = []
    for number, line in enumerate(jsonl_lines(text), 1):
        if not line.strip():
            continue
        try:
            value = load_json(line)
        except ValueError as error:
            problems.append({"line": number, "message": f"line {number}: malformed JSON ({error})"})
            value = None
        if isinstance(value, dict):
            records.append(value)
            columns.extend(key for key in value if key not in columns)
        if len(records) + len(problems) >= n:
            break
    rows = [[cell(record.get(column)) for column in columns] for record in records]
    return FilePreview(columns=columns, rows=rows, n_lines=n_lines, problems=problems)


def cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"
