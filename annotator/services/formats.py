"""Every import file format behind one door: read a file (or a request's body) into import rows, then
import them all or nothing with each problem named where it is in the file (its line, task or row).

The API, the import page and ``manage.py import_examples`` all call :func:`file_rows` and
:func:`examples_import_file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from annotator.errors import InvalidInput
from annotator.models import Project, Source
from annotator.services import files
from annotator.services import formats_hf as hf
from annotator.services import formats_labelstudio as labelstudio
from annotator.services.examples import ImportResult, examples_import
from annotator.services.files import ColumnMap

DEFAULT_COLUMNS = ColumnMap()
IMPORT_FORMATS = ("csv", "jsonl", "labelstudio", "parquet", "hf_dataset")
EXPORT_FORMATS = ("jsonl", "csv", "labelstudio", "parquet")
FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSONL", "labelstudio": "Label Studio JSON",
                "parquet": "Parquet (Hugging Face datasets)", "hf_dataset": "saved Hugging Face dataset"}


@dataclass
class FileRows:
    """Import rows and where each came from: file lines (CSV, JSONL) or a description (``task 3``)."""

    rows: list[dict[str, Any]]
    lines: list[int] | None = None
    where: list[str] | None = None


def guess_format(name: str, data: bytes | None = None) -> str:
    """The format of a file by its name (and, for ``.json``, its first character: ``[`` is Label Studio)."""
    lowered = name.lower().rstrip("/")
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".json") and data is not None and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
        return "labelstudio"
    try:
        return files.guess_format(name)
    except InvalidInput:
        raise InvalidInput([{"field": "format", "message": f"cannot tell the format of {name!r}; use .csv, "
                                                           ".jsonl, .json (Label Studio) or .parquet, or name "
                                                           "the format"}]) from None


def check_format(fmt: Any, allowed: tuple[str, ...] = IMPORT_FORMATS) -> str:
    if fmt not in allowed:
        raise InvalidInput([{"field": "format", "message": f"format must be one of {', '.join(allowed)}"}])
    return fmt


def file_rows(
    *, project: Project, user: AbstractBaseUser, fmt: str, data: bytes | None = None, path: Path | None = None,
    columns: ColumnMap = DEFAULT_COLUMNS, max_rows: int | None = None, limit_unpacked: bool = True,
) -> FileRows:
    """Read an uploaded file (``data``) or a file or directory on this machine (``path``) into rows."""
    check_format(fmt)
    if fmt == "hf_dataset":
        if path is None or not path.is_dir():
            raise InvalidInput([{"field": "format", "message": "hf_dataset is a directory written by save_to_disk "
                                                               "(on this machine); to upload a dataset, send it as "
                                                               "Parquet (Dataset.to_parquet)"}])
        rows, where = hf.dataset_dir_rows(path, columns=columns)
        return FileRows(rows, where=where)
    if path is not None and path.is_dir():
        raise InvalidInput([{"field": "format", "message": f"{path} is a directory; only a dataset saved with "
                                                           "save_to_disk (format hf_dataset) can be one"}])
    if fmt == "parquet":
        source: bytes | Path = data if data is not None else Path(str(path))
        rows, where = hf.parquet_rows(source, columns=columns, max_rows=max_rows,
                                      max_bytes=hf.max_unpacked_bytes() if limit_unpacked else None)
        return FileRows(rows, where=where)
    content = data if data is not None else Path(str(path)).read_bytes()
    if fmt == "labelstudio":
        return labelstudio_rows(project=project, user=user, tasks=labelstudio.load_tasks(content),
                                text_key=columns.text)
    rows, lines = files.parse_file(content, fmt, columns)
    return FileRows(rows, lines=lines)


def labelstudio_rows(*, project: Project, user: AbstractBaseUser, tasks: Any,
                     text_key: str = labelstudio.TEXT_KEY) -> FileRows:
    """Rows of already decoded Label Studio tasks (the API's JSON body)."""
    rows = labelstudio.labelstudio_rows(project, tasks, importer=user.get_username(), text_key=text_key)
    return FileRows(rows, where=[f"task {i}" for i in range(len(rows))])


def examples_import_file(
    *, project: Project, user: AbstractBaseUser, parsed: FileRows, default_source: str = Source.IMPORT,
    allow_history: bool = False, max_rows: int | None = None,
) -> ImportResult:
    """``examples_import`` of a file's rows; problems name the file line, task or row they are at."""
    try:
        return examples_import(project=project, user=user, rows=parsed.rows, default_source=default_source,
                               max_rows=max_rows, allow_history=allow_history, line_numbers=parsed.lines)
    except InvalidInput as error:
        if parsed.where is not None:
            error.errors = [_placed(problem, parsed) for problem in error.errors]
        raise


def _placed(problem: dict[str, Any], parsed: FileRows) -> dict[str, Any]:
    index = problem.get("index")
    if index is None or parsed.where is None or not 0 <= index < len(parsed.where):
        return problem
    where = parsed.where[index]
    placed = dict(problem)
    if where.startswith("task ") and "field" in placed:
        placed["field"] = labelstudio.task_field(placed["field"])
    if not placed["message"].startswith(where):
        placed["message"] = f"{where}: {placed['message']}"
    return placed
