"""Hostile values through the API: huge texts, deep and large metadata, NUL bytes, lone surrogates, and
right-to-left and combining text that must come back exactly.

Policy for characters PostgreSQL or UTF-8 cannot hold: a NUL (``\\u0000``) or a lone surrogate
(``\\ud800``) anywhere in a request is refused with a 400 that names the field (and the row of a bulk
request); nothing is stripped or replaced, and nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from annotator.models import Annotation, Example, LabelClass, Membership, Project
from annotator.services.examples import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, examples_import
from annotator.services.files import parse_file
from tests.annotator.assertions import error_list


def everything() -> tuple[int, ...]:
    """Rows of every table a request here could write."""
    return (Example.objects.count(), Annotation.objects.count(), Project.objects.count(),
            LabelClass.objects.count(), Membership.objects.count(), get_user_model().objects.count())


def post_raw(client: Any, method: str, url: str, body: str | bytes) -> Any:
    """Send a body exactly as given (the test client would re-encode a Python object)."""
    return getattr(client, method)(url, data=body, content_type="application/json")


def nested(depth: int, leaf: Any = 1) -> str:
    """A JSON object nested ``depth`` levels deep, built as text (json.dumps would hit Python's stack)."""
    return '{"a": ' * depth + json.dumps(leaf) + "}" * depth


@pytest.fixture
def staff_admin(admin: Any) -> Any:
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    return admin


@pytest.fixture
def example(project: Any, admin: Any, make_examples: Callable[..., Any]) -> Any:
    return make_examples(project, admin, [{"external_id": "one", "text": "already here", "label": "positive"}])[0]


# --- text length limits ------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("limit", [1_000, 20_000], ids=["project limit", "default limit"])
def test_a_text_exactly_at_the_limit_is_accepted_and_one_more_character_is_a_400_naming_it(
        make_project: Any, admin: Any, api_client: Any, limit: int) -> None:
    project = make_project(admin, settings={"max_text_chars": limit} if limit != 20_000 else None)
    client = api_client(admin)
    url = f"/api/v1/projects/{project.id}/examples/"
    # Characters, not bytes: an astral emoji is one character of four UTF-8 bytes.
    at_limit = "\U0001f642" * limit
    before = everything()

    over = client.post(url, [{"text": "ok"}, {"text": at_limit + "x"}], format="json")

    [error] = error_list(over)
    assert over.status_code == 400 and error["index"] == 1 and error["field"] == "text"
    assert f"{limit:,}" in error["message"] and f"{limit + 1:,}" in error["message"]
    assert everything() == before
    ok = client.post(url, [{"text": at_limit}], format="json")
    assert ok.status_code == 201
    assert Example.objects.get(pk=ok.json()["ids"][0]).text == at_limit


@pytest.mark.django_db
def test_production_samples_and_predictions_over_the_limit_are_refused_naming_it(
        make_project: Any, admin: Any, api_client: Any) -> None:
    project = make_project(admin, settings={"max_text_chars": 50})
    client = api_client(admin)
    before = everything()

    samples = client.post(f"/api/v1/projects/{project.id}/samples/", [{"text": "y" * 51}], format="json")
    predict = client.post(f"/api/v1/projects/{project.id}/predict/", {"texts": ["y" * 51]}, format="json")

    assert samples.status_code == 400 and "50" in error_list(samples)[0]["message"]
    assert predict.status_code == 400 and "50" in error_list(predict)[0]["message"]
    assert everything() == before
    assert client.post(f"/api/v1/projects/{project.id}/samples/", [{"text": "y" * 50}],
                       format="json").status_code == 201


@pytest.mark.django_db
def test_a_csv_file_holds_texts_longer_than_the_csv_modules_default_field_limit(
        make_project: Any, admin: Any) -> None:
    # csv refuses cells over 131,072 characters by default; a project may allow up to a million.
    project = make_project(admin, settings={"max_text_chars": 200_000})
    long_text = "word " * 30_000
    data = f'text,label\n"{long_text}",positive\n"{long_text}!" ,negative\n'.encode()

    rows, lines = parse_file(data, "csv")
    result = examples_import(project=project, user=admin, rows=rows, max_rows=None, line_numbers=lines)

    assert result.created == 2
    assert {e.text for e in project.examples.all()} == {long_text, long_text + "! "}


@pytest.mark.django_db
def test_a_csv_text_over_the_project_limit_is_refused_with_its_line_and_the_limit(
        make_project: Any, admin: Any) -> None:
    project = make_project(admin, settings={"max_text_chars": 200_000})
    data = ("text\nshort\n" + "z" * 200_001 + "\n").encode()
    before = everything()

    rows, lines = parse_file(data, "csv")
    with pytest.raises(Exception) as raised:
        examples_import(project=project, user=admin, rows=rows, max_rows=None, line_numbers=lines)

    [error] = raised.value.errors
    assert error["line"] == 3 and error["field"] == "text" and "200,000" in error["message"]
    assert everything() == before


@pytest.mark.django_db
def test_a_body_over_the_request_limit_is_413_naming_the_limit(project: Any, as_admin: Any, settings: Any) -> None:
    settings.MAX_REQUEST_BYTES = 100_000
    before = everything()

    response = as_admin.post(f"/api/v1/projects/{project.id}/examples/", [{"text": "x" * 120_000}], format="json")

    assert response.status_code == 413 and "100,000" in error_list(response)[0]["message"]
    assert everything() == before


# --- deep and large metadata, deep bodies anywhere -------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 300, 2_000, 10_000])
def test_metadata_nested_too_deep_is_a_400_not_a_recursion_error(project: Any, as_admin: Any, depth: int) -> None:
    before = everything()
    body = '[{"text": "deep", "metadata": ' + nested(depth) + "}]"

    response = post_raw(as_admin, "post", f"/api/v1/projects/{project.id}/examples/", body)

    assert response.status_code == 400
    assert "nested" in error_list(response)[0]["message"]
    assert everything() == before


@pytest.mark.django_db
def test_metadata_at_the_depth_limit_round_trips(project: Any, as_admin: Any) -> None:
    body = '[{"text": "deep enough", "metadata": ' + nested(MAX_METADATA_DEPTH, "\u05e9\u05dc\u05d5\u05dd") + "}]"

    response = post_raw(as_admin, "post", f"/api/v1/projects/{project.id}/examples/", body)

    assert response.status_code == 201
    detail = as_admin.get(f"/api/v1/examples/{response.json()['ids'][0]}/").json()
    assert detail["metadata"] == json.loads(nested(MAX_METADATA_DEPTH, "\u05e9\u05dc\u05d5\u05dd"))


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["one big string", "many keys", "long list"])
def test_metadata_over_its_size_limit_is_a_400_naming_the_limit(project: Any, as_admin: Any, shape: str) -> None:
    metadata = {
        "one big string": {"blob": "m" * MAX_METADATA_BYTES},
        "many keys": {f"key{i}": i for i in range(MAX_METADATA_BYTES // 8)},
        "long list": {"list": list(range(MAX_METADATA_BYTES // 4))},
    }[shape]
    before = everything()

    response = as_admin.post(f"/api/v1/projects/{project.id}/examples/", [{"text": "big", "metadata": metadata}],
                             format="json")

    [error] = error_list(response)
    assert response.status_code == 400 and error["field"] == "metadata"
    assert f"{MAX_METADATA_BYTES // 1024} KB" in error["message"]
    assert everything() == before


def _deep_bodies(project_id: int, example_id: int) -> list[tuple[str, str, str]]:
    deep = nested(10_000)
    mid = nested(900)  # under the parsers' own limits: reaches the services
    p = f"/api/v1/projects/{project_id}"
    return [
        ("post", "/api/v1/projects/", '{"name": "n", "task": "single_label", "labels": ["a"], "settings": ' + deep + "}"),
        ("post", "/api/v1/projects/", '{"name": ' + mid + ', "task": "single_label", "labels": ["a"]}'),
        ("patch", f"{p}/", '{"settings": {"queue_mix": ' + mid + "}}"),
        ("patch", f"{p}/", '{"settings": ' + deep + "}"),
        ("post", f"{p}/members/", '{"username": ' + mid + ', "role": "reviewer"}'),
        ("post", f"{p}/samples/", '[{"text": "s", "metadata": ' + mid + "}]"),
        ("post", f"{p}/samples/", "[" * 10_000 + "]" * 10_000),
        ("post", f"{p}/predict/", '{"texts": ' + "[" * 900 + "]" * 900 + "}"),
        ("post", f"{p}/noise-report/decisions/", '[{"example_id": ' + str(example_id)
         + ', "action": "relabel", "labels": ' + "[" * 900 + "]" * 900 + "}]"),
        ("post", f"/api/v1/examples/{example_id}/annotations/", '{"label": ' + mid + "}"),
        ("post", f"/api/v1/examples/{example_id}/annotations/", '{"labels": ' + "[" * 10_000 + "]" * 10_000 + "}"),
        ("post", "/api/v1/auth/token/", '{"username": ' + deep + ', "password": "x"}'),
        ("post", "/api/v1/users/", '{"username": ' + mid + ', "password": "correct-horse-battery"}'),
    ]


@pytest.mark.django_db
def test_deeply_nested_bodies_on_every_writing_endpoint_are_4xx(project: Any, example: Any, staff_admin: Any,
                                                                api_client: Any) -> None:
    client = api_client(staff_admin)
    before = everything()

    answers = [(method, url, post_raw(client, method, url, body).status_code)
               for method, url, body in _deep_bodies(project.id, example.id)]

    assert [a for a in answers if a[2] not in (400, 409)] == []
    assert everything() == before


# --- NUL and lone surrogates -------------------------------------------------------------------------------
def _string_fields(project_id: int, example_id: int, bad: str) -> list[tuple[str, str, Any, str]]:
    """(method, url, body, the field the error must name) for every string a client can send."""
    p = f"/api/v1/projects/{project_id}"
    return [
        ("post", "/api/v1/projects/", {"name": bad, "task": "single_label", "labels": ["a"]}, "name"),
        ("post", "/api/v1/projects/", {"name": "n", "task": "single_label", "labels": ["a", bad]}, "labels[1]"),
        ("patch", f"{p}/", {"settings": {"guidelines": bad}}, "settings.guidelines"),
        ("post", f"{p}/members/", {"username": bad, "role": "reviewer"}, "username"),
        ("delete", f"{p}/members/", {"username": bad}, "username"),
        ("post", f"{p}/examples/", [{"text": "fine"}, {"text": bad}], "text"),
        ("post", f"{p}/examples/", [{"text": "t", "external_id": bad}], "external_id"),
        ("post", f"{p}/examples/", [{"text": "t", "metadata": {"k": [bad]}}], "metadata"),
        ("post", f"{p}/examples/", [{"text": "t", "metadata": {bad: 1}}], "metadata"),
        ("post", f"{p}/examples/", [{"text": "t", "label": "positive",
                                     "annotations": [{"user": "alice", "label": "positive", "note": bad}]}],
         "annotations[0].note"),
        ("post", f"/api/v1/examples/{example_id}/annotations/", {"label": "negative", "note": bad}, "note"),
        ("post", f"{p}/samples/", [{"text": bad}], "text"),
        ("post", f"{p}/samples/", [{"text": "s", "metadata": {"m": bad}}], "metadata"),
        ("post", f"{p}/predict/", {"texts": [bad]}, "texts"),
        ("post", f"{p}/noise-report/decisions/", [{"example_id": example_id, "action": "keep", "note": bad}], "note"),
        ("post", "/api/v1/auth/token/", {"username": bad, "password": "x"}, "username"),
        ("post", "/api/v1/users/", {"username": bad, "password": "correct-horse-battery"}, "username"),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b", "\udfff"], ids=["NUL", "high surrogate", "low surrogate"])
def test_nul_and_lone_surrogates_are_refused_in_every_field_naming_it(project: Any, example: Any,
                                                                      staff_admin: Any, api_client: Any,
                                                                      bad: str) -> None:
    client = api_client(staff_admin)
    before = everything()
    wrong = []

    for method, url, body, field in _string_fields(project.id, example.id, bad):
        # json.dumps writes both as \\u escapes: the body itself is valid ASCII JSON.
        response = post_raw(client, method, url, json.dumps(body))
        errors = error_list(response) if response.status_code == 400 else []
        if response.status_code != 400 or not any(field == e.get("field") for e in errors):
            wrong.append((url, field, response.status_code, response.content[:200]))

    assert wrong == []
    assert everything() == before


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["q", "source", "label"])
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(project: Any, as_admin: Any, param: str) -> None:
    response = as_admin.get(f"/api/v1/projects/{project.id}/examples/?{param}=a%00b")

    assert response.status_code == 400 and error_list(response)[0]["field"] == param


@pytest.mark.django_db
def test_a_valid_surrogate_pair_escape_is_an_ordinary_character(project: Any, as_admin: Any) -> None:
    body = '[{"text": "smile \\ud83d\\ude00", "metadata": {"\\ud83d\\ude00": "\\ud83d\\ude00"}}]'

    response = post_raw(as_admin, "post", f"/api/v1/projects/{project.id}/examples/", body)

    assert response.status_code == 201
    stored = Example.objects.get(pk=response.json()["ids"][0])
    assert stored.text == "smile \U0001f600" and stored.metadata == {"\U0001f600": "\U0001f600"}


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b'[{"text": "caf\xe9"}]', b'[{"text": "\xed\xa0\x80"}]', b"\xff\xfe[\x00]\x00"],
                         ids=["latin-1 byte", "UTF-8-encoded surrogate", "UTF-16"])
def test_a_body_that_is_not_utf8_is_a_400(project: Any, as_admin: Any, body: bytes) -> None:
    before = everything()

    response = post_raw(as_admin, "post", f"/api/v1/projects/{project.id}/examples/", body)

    assert response.status_code == 400 and error_list(response)
    assert everything() == before


# --- right-to-left, combining and other text that must not change -----------------------------------------
ROUND_TRIP_TEXTS = [
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew with points
    "\u0627\u0644\u0633\u0651\u064e\u0644\u0627\u0645\u064f \u0639\u0644\u064a\u0643\u0645",  # Arabic, harakat
    "mixed \u202eoverride\u202c and \u200fRLM\u200e marks",
    "e\u0301 decomposed",  # NFD: must not be normalised
    "\u00e9 decomposed",  # its NFC twin is a different text
    "Z\u0351\u0308\u0344a\u0352\u0301l\u035bg\u0353o",  # stacked combining marks
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467 and flag \U0001f1f3\U0001f1f4",
    "=HYPERLINK(\"http://x\") \u2028 line separator \u0085 next line",
    "'=already guarded",
    "tab\tinside, \"quotes\" and\r\nnewlines",
]


def _export(client: Any, project_id: int, fmt: str) -> str:
    response = client.get(f"/api/v1/projects/{project_id}/export/?format={fmt}")
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.mark.django_db
def test_rtl_and_combining_text_round_trips_through_import_detail_and_both_exports(
        project: Any, as_admin: Any, make_project: Any, admin: Any) -> None:
    rows = [{"external_id": f"rt-{i}", "text": text, "label": "positive",
             "metadata": {"\u05de\u05e7\u05d5\u05e8": text, "note": "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"}}
            for i, text in enumerate(ROUND_TRIP_TEXTS)]

    imported = as_admin.post(f"/api/v1/projects/{project.id}/examples/", rows, format="json")

    assert imported.status_code == 201 and imported.json()["created"] == len(rows)
    for row, pk in zip(rows, imported.json()["ids"], strict=True):
        detail = as_admin.get(f"/api/v1/examples/{pk}/").json()
        assert (detail["text"], detail["metadata"]) == (row["text"], row["metadata"])

    exported_jsonl = [json.loads(line) for line in _export(as_admin, project.id, "jsonl").split("\n") if line]
    assert [(r["text"], r["metadata"]) for r in exported_jsonl] == [(r["text"], r["metadata"]) for r in rows]
    exported_csv = list(csv.DictReader(io.StringIO(_export(as_admin, project.id, "csv"), newline="")))
    assert [json.loads(r["metadata"]) for r in exported_csv] == [r["metadata"] for r in rows]

    # Both export files import into a new project with every text unchanged.
    for fmt in ("jsonl", "csv"):
        again = make_project(admin, name=f"again-{fmt}")
        parsed, lines = parse_file(_export(as_admin, project.id, fmt).encode("utf-8"), fmt)
        examples_import(project=again, user=admin, rows=parsed, max_rows=None, allow_history=True,
                        line_numbers=lines)
        assert sorted(again.examples.values_list("text", flat=True)) == sorted(ROUND_TRIP_TEXTS), fmt
