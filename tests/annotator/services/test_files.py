"""Reading CSV and JSONL files into import rows, with the file line of every row and every problem."""

from __future__ import annotations

import json

import pytest

from annotator.errors import InvalidInput
from annotator.services.files import ColumnMap, decode, guess_format, parse_file


def problems(data: bytes, fmt: str) -> list[dict]:
    with pytest.raises(InvalidInput) as raised:
        parse_file(data, fmt)
    return raised.value.errors


# --- format and encoding -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("reviews.csv", "csv"),
        ("REVIEWS.CSV", "csv"),
        ("data.tsv", "csv"),
        ("rows.jsonl", "jsonl"),
        ("rows.ndjson", "jsonl"),
        ("rows.json", "jsonl"),
    ],
)
def test_the_format_follows_the_file_name(name, fmt):
    assert guess_format(name) == fmt


def test_an_unknown_extension_is_refused():
    with pytest.raises(InvalidInput) as raised:
        guess_format("data.xlsx")
    assert raised.value.errors[0]["field"] == "format"


def test_an_unknown_format_is_refused():
    assert problems(b"text\nx\n", "xml")[0]["field"] == "format"


def test_a_byte_order_mark_is_dropped():
    assert decode("\ufefftext\nhé".encode()) == "text\nhé"


def test_a_broken_utf8_byte_is_reported_with_its_line_and_column():
    data = b"text\nfine\nbad \xff byte\n"

    with pytest.raises(InvalidInput) as raised:
        decode(data)

    [error] = raised.value.errors
    assert error["line"] == 3
    assert "line 3, column 5" in error["message"] and "0xff" in error["message"]


def test_latin1_text_is_not_guessed_but_refused():
    [error] = problems("text\ncaf\u00e9\n".encode("latin-1"), "csv")

    assert error["line"] == 2 and "UTF-8" in error["message"]


# --- JSONL ----------------------------------------------------------------------------------------------
def test_jsonl_rows_come_with_their_line_numbers_skipping_blank_lines():
    data = b'{"text": "one", "label": "a"}\n\n   \n{"text": "two", "metadata": {"k": 1}}\n'

    rows, lines = parse_file(data, "jsonl")

    assert rows == [{"text": "one", "label": "a"}, {"text": "two", "metadata": {"k": 1}}]
    assert lines == [1, 4]


def test_jsonl_without_a_final_newline_and_with_crlf_endings():
    rows, lines = parse_file(b'{"text": "one"}\r\n{"text": "two"}', "jsonl")

    assert [r["text"] for r in rows] == ["one", "two"] and lines == [1, 2]


def test_jsonl_reports_every_malformed_line():
    data = b'{"text": "ok"}\n{"text": "broken"\n["a", "list"]\n{"text": "ok"}\n'

    errors = problems(data, "jsonl")

    assert [e["line"] for e in errors] == [2, 3]
    assert "malformed JSON" in errors[0]["message"] and "object" in errors[1]["message"]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"], ids=["empty", "blank lines"])
def test_a_file_without_rows_is_refused(data):
    assert "no rows" in problems(data, "jsonl")[0]["message"]


def test_jsonl_columns_can_be_renamed():
    columns = ColumnMap(text="body", label="category", external_id="uid")

    rows, _ = parse_file(b'{"body": "hi", "category": "a", "uid": "7", "source": "s"}\n', "jsonl", columns)

    assert rows == [{"text": "hi", "label": "a", "external_id": "7", "source": "s"}]


# --- CSV ------------------------------------------------------------------------------------------------
def test_csv_rows_come_with_the_line_they_end_on_and_empty_cells_are_left_out():
    data = b'external_id,text,label,source\n1,hello,a,\n2,"two\nlines",,seed\n'

    rows, lines = parse_file(data, "csv")

    assert rows == [
        {"external_id": "1", "text": "hello", "label": "a"},
        {"external_id": "2", "text": "two\nlines", "source": "seed"},
    ]
    assert lines == [2, 4]


@pytest.mark.parametrize(
    "data",
    [
        b"text;label\nhello, there;a\n",
        b"text\tlabel\nhello, there\ta\n",
        b'text,label\n"hello, there",a\n',
    ],
    ids=["semicolon", "tab", "comma"],
)
def test_the_csv_delimiter_is_detected(data):
    rows, _ = parse_file(data, "csv")

    assert rows == [{"text": "hello, there", "label": "a"}]


def test_csv_quotes_follow_rfc_4180_even_when_the_first_rows_have_none():
    plain = "".join(f'"row {i}, fine",a\n' for i in range(300))
    data = ("text,label\n" + plain + '"He said ""hi"", then left",b\n').encode()

    rows, lines = parse_file(data, "csv")

    assert rows[-1] == {"text": 'He said "hi", then left', "label": "b"}
    assert lines[-1] == 302


def test_csv_apostrophes_are_kept_as_written():
    rows, _ = parse_file(b"text,label\n'quoted' word,a\n'another' one,b\n", "csv")

    assert [r["text"] for r in rows] == ["'quoted' word", "'another' one"]


def test_csv_cells_guarded_against_formulas_by_the_export_are_read_back_unguarded():
    rows, _ = parse_file(b"text,label\n'=1+1,a\n'-5 degrees,a\n'@home,a\n", "csv")

    assert [r["text"] for r in rows] == ["=1+1", "-5 degrees", "@home"]


def test_csv_metadata_and_annotations_are_json_and_labels_are_bar_separated():
    history = json.dumps([{"user": "u", "kind": "label", "labels": ["a", "b"]}]).replace('"', '""')
    data = f'text,labels,metadata,annotations\nhi,a|b,"{{""k"": 1}}","{history}"\n'.encode()

    [row], _ = parse_file(data, "csv")

    assert row == {
        "text": "hi",
        "labels": ["a", "b"],
        "metadata": {"k": 1},
        "annotations": [{"user": "u", "kind": "label", "labels": ["a", "b"]}],
    }


def test_an_exported_csv_row_keeps_one_of_label_and_labels():
    [single, multi], _ = parse_file(b"text,label,labels\nx,a,a\ny,,a|b\n", "csv")

    assert single == {"text": "x", "label": "a"}
    assert multi == {"text": "y", "labels": ["a", "b"]}


def test_csv_columns_can_be_renamed():
    rows, _ = parse_file(b"body,category\nhi,a\n", "csv", ColumnMap(text="body", label="category"))

    assert rows == [{"text": "hi", "label": "a"}]


def test_csv_without_the_text_column_is_refused_on_line_1():
    [error] = problems(b"body,label\nhi,a\n", "csv")

    assert error["line"] == 1 and error["field"] == "text" and "body, label" in error["message"]


def test_csv_reports_every_bad_row_with_its_line():
    data = b'text,metadata\nok,\nbad,{not json}\nfine,"{""a"": 1}"\ntoo,many,cells\n'

    errors = problems(data, "csv")

    assert [(e["line"], e.get("field")) for e in errors] == [(3, "metadata"), (5, None)]


def test_csv_with_only_a_header_has_no_rows():
    assert "no rows" in problems(b"text,label\n", "csv")[0]["message"]
