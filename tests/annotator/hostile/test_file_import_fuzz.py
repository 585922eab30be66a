"""Hypothesis against the CSV and JSONL import: arbitrary bytes, encodings, unicode, quotes, newlines,
BOMs and missing columns either parse cleanly or fail with precise errors (a line number for every row
problem), never with another exception; a failed import writes nothing (row counts in PostgreSQL)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from annotator.csv_cells import csv_safe
from annotator.errors import InvalidInput
from annotator.services.examples import examples_import
from annotator.services.files import parse_file
from annotator.services.projects import project_create
from tests.annotator.assertions import counts

FUZZ = settings(max_examples=150, derandomize=True, database=None, deadline=None)
DB_FUZZ = settings(max_examples=40, derandomize=True, database=None, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LABELS = ["pos", "neg"]
# Characters that break naive parsers: quotes, every line break Python knows, NUL, BOM, formula starts,
# delimiters, right-to-left marks and overrides, combining accents, an astral emoji.
TRICKY = ['"', "'", "\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
          "\x00", "\ufeff", "=", "+", "-", "@", "\t", ",", ";", "|", "{", "}", "[", "]", "\\", "\u202e",
          "\u200f", "\u05e9\u05dc\u05d5\u05dd", "\u0627\u0644\u0633\u0644\u0627\u0645", "e\u0301", "\u0308",
          "\U0001f600"]
# File-level errors carry no line; every other error names the line it is on.
FILE_LEVEL = ("the file has no rows", "no rows to import")

tricky_text = st.lists(st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=["Cs"])),
                       max_size=30).map("".join)
plain_text = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=30)


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + 1


def assert_precise(error: InvalidInput, data: bytes) -> None:
    assert error.errors, "an InvalidInput with no errors"
    for problem in error.errors:
        assert isinstance(problem.get("message"), str) and problem["message"]
        if "line" in problem:
            assert isinstance(problem["line"], int) and 1 <= problem["line"] <= _line_count(data), problem
        else:
            assert problem.get("field") == "format" or problem["message"] in FILE_LEVEL, problem


# --- files as they come: arbitrary bytes ------------------------------------------------------------------
def _encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


raw_files = st.one_of(
    st.binary(max_size=400),
    st.builds(_encoded, tricky_text, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])),
    st.lists(tricky_text, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8")),
    # A plausible header then garbage: the parser gets past the header and meets the rows.
    st.tuples(st.sampled_from(["text,label\n", "text;label\n", "text\tlabel\n", "label,external_id\n",
                               '{"text": "a"}\n', "\ufefftext\n"]), tricky_text)
      .map(lambda pair: (pair[0] + pair[1]).encode("utf-8")),
)


@FUZZ
@given(data=raw_files, fmt=st.sampled_from(["csv", "jsonl"]))
def test_any_bytes_parse_or_fail_with_a_line(data: bytes, fmt: str) -> None:
    try:
        rows, lines = parse_file(data, fmt)
    except InvalidInput as error:
        assert_precise(error, data)
        return
    assert rows and len(rows) == len(lines)
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert all(isinstance(row, dict) for row in rows)
    assert lines[0] >= 1 and lines[-1] <= _line_count(data)


# --- round trips: what a spreadsheet or a script writes is read back exactly ------------------------------
@FUZZ
@given(texts=st.lists(tricky_text.filter(str.strip), min_size=1, max_size=8),
       bom=st.booleans(), crlf=st.booleans())
@example(texts=["'=1+1", "''@x", "=cmd", "'plain"], bom=False, crlf=True)
def test_csv_written_by_the_csv_module_reads_back_exactly(texts: list[str], bom: bool, crlf: bool) -> None:
    buffer = io.StringIO()
    # With "\n" line ends the csv module leaves a lone "\r" unquoted (no reader could tell it from a line
    # break), so that variant quotes every cell, as spreadsheets writing LF files do.
    writer = csv.writer(buffer, lineterminator="\r\n") if crlf else \
        csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["external_id", "text", "label"])
    for i, text in enumerate(texts):
        # The export guards formula-like cells; the import takes the guard off again.
        writer.writerow([f"id-{i}", csv_safe(text), LABELS[i % 2]])
    data = (codecs.BOM_UTF8 if bom else b"") + buffer.getvalue().encode("utf-8")

    rows, lines = parse_file(data, "csv")

    assert [row["text"] for row in rows] == texts
    assert [row["external_id"] for row in rows] == [f"id-{i}" for i in range(len(texts))]
    assert len(lines) == len(texts)


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries(
           {"text": tricky_text}, optional={"external_id": plain_text, "label": st.sampled_from(LABELS),
                                            "metadata": st.dictionaries(tricky_text, tricky_text, max_size=3)}),
           min_size=1, max_size=6),
       ascii_only=st.booleans(), crlf=st.booleans(), bom=st.booleans())
def test_jsonl_written_by_json_dumps_reads_back_exactly(rows: list[dict[str, Any]], ascii_only: bool, crlf: bool,
                                                         bom: bool) -> None:
    # ensure_ascii=False writes U+2028, U+0085 and friends raw, as PostgreSQL's JSON and most tools do.
    body = ("\r\n" if crlf else "\n").join(json.dumps(row, ensure_ascii=ascii_only) for row in rows)
    data = (codecs.BOM_UTF8 if bom else b"") + body.encode("utf-8")

    parsed, lines = parse_file(data, "jsonl")

    assert parsed == rows
    assert lines == list(range(1, len(rows) + 1))


# --- the import_examples path on PostgreSQL: all or nothing ---------------------------------------------
def _csv_row(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


csv_files = st.tuples(
    st.lists(st.sampled_from(["text", "label", "external_id", "metadata", "source", "extra"]),
             min_size=1, max_size=4, unique=True),
    st.lists(st.lists(st.one_of(tricky_text, st.sampled_from(LABELS + ["nope", "{}", '{"k": [1]}', "{bad"])),
                      max_size=5), max_size=5),
).map(lambda spec: (_csv_row(spec[0]) + "".join(_csv_row(r) for r in spec[1])).encode("utf-8"))

jsonl_lines = st.one_of(
    st.fixed_dictionaries({"text": tricky_text}, optional={
        "label": st.sampled_from(LABELS + ["nope"]), "external_id": st.one_of(plain_text, st.integers()),
        "metadata": st.one_of(st.dictionaries(tricky_text, tricky_text, max_size=2), st.integers()),
        "source": st.sampled_from(["seed", "bad source", ""]), "extra": st.none()}).map(json.dumps),
    tricky_text,
    st.sampled_from(["[]", "null", '{"text": NaN}', '{"text": "x", "metadata": {"n": Infinity}}', "{",
                     '{"text": "' + "\\ud800" + '"}', '{"text": "a\\u0000b"}', "[" * 5000 + "]" * 5000]),
)
jsonl_files = st.lists(jsonl_lines, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8"))

# Well-formed files with hostile texts: most of these import, so the success path is fuzzed too.
good_texts = st.lists(tricky_text.filter(lambda t: t.strip() and "\x00" not in t), min_size=1, max_size=6,
                      unique=True)
good_csv = good_texts.map(lambda texts: ("csv", (_csv_row(["external_id", "text", "label"]) + "".join(
    _csv_row([f"r{i}", csv_safe(text), LABELS[i % 2]]) for i, text in enumerate(texts))).encode("utf-8"), texts))
good_jsonl = good_texts.map(lambda texts: ("jsonl", "\n".join(
    json.dumps({"text": text, "label": LABELS[i % 2]}, ensure_ascii=False) for i, text in enumerate(texts)
).encode("utf-8"), texts))


@pytest.fixture
def owner(make_user: Any) -> Any:
    return make_user("importer")


def import_file(owner: Any, data: bytes, fmt: str) -> tuple[Any, Any]:
    """What ``manage.py import_examples`` and the import page do with a file, into a fresh project."""
    project = project_create(user=owner, name="fuzz", task="single_label", labels=list(LABELS))
    try:
        rows, lines = parse_file(data, fmt)
        result = examples_import(project=project, user=owner, rows=rows, max_rows=None, allow_history=True,
                                 line_numbers=lines)
    except InvalidInput as error:
        return project, error
    return project, result


@pytest.mark.django_db
@DB_FUZZ
@given(data=st.one_of(csv_files.map(lambda d: ("csv", d, None)), jsonl_files.map(lambda d: ("jsonl", d, None)),
                      good_csv, good_jsonl))
def test_a_file_import_writes_everything_or_nothing(owner: Any, data: tuple[str, bytes, list[str] | None]) -> None:
    fmt, content, texts = data
    before = counts()

    project, outcome = import_file(owner, content, fmt)

    event("refused" if isinstance(outcome, InvalidInput) else "imported")
    if isinstance(outcome, InvalidInput):
        assert counts() == before, f"a refused import wrote rows: {outcome}"
        assert_precise(outcome, content)
        assert all("line" in problem for problem in outcome.errors if "index" in problem)
    else:
        assert counts()[0] == before[0] + outcome.created
        rows, _ = parse_file(content, fmt)
        stored = set(project.examples.values_list("text", flat=True))
        assert {row["text"] for row in rows} == stored, "a text changed on its way into PostgreSQL"
    if texts is not None:
        assert not isinstance(outcome, InvalidInput), outcome.errors
        assert sorted(texts) == sorted(project.examples.values_list("text", flat=True))


@pytest.mark.django_db
def test_the_import_command_names_the_line_and_writes_nothing(owner: Any, tmp_path: Path) -> None:
    project = project_create(user=owner, name="cmd", task="single_label", labels=list(LABELS))
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "fine", "label": "pos"}\n' + b"[" * 5000 + b"]" * 5000 + b"\n"
                     + '{"text": "\u2028 inside", "label": "neg"}\n'.encode())
    before = counts()
    err = io.StringIO()

    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_examples", str(path), project=project.id, user=owner.username,
                     stdout=io.StringIO(), stderr=err)

    assert counts() == before
    assert err.getvalue().startswith("line 2:") and "nested" in err.getvalue()


@pytest.mark.django_db
@settings(max_examples=20, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(csv_files.map(lambda d: ("rows.csv", d)), jsonl_files.map(lambda d: ("rows.jsonl", d)),
                      raw_files.map(lambda d: ("rows.csv", d))),
       action=st.sampled_from(["preview", "import"]))
def test_the_import_page_answers_every_upload_without_a_server_error(
        client: Any, owner: Any, data: tuple[str, bytes], action: str) -> None:
    name, content = data
    project = project_create(user=owner, name="page", task="single_label", labels=list(LABELS))
    client.force_login(owner)
    before = counts()

    response = client.post(f"/projects/{project.id}/import/",
                           {"file": SimpleUploadedFile(name, content), "action": action})

    assert response.status_code in (200, 422), response.status_code
    if response.status_code == 422 or action == "preview":
        assert counts() == before
