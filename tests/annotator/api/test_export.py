"""GET /api/v1/projects/{id}/export/?format=jsonl|csv, and the export -> import round trip."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from annotator.models import Annotation, Example, Role
from annotator.selectors import export as export_selectors
from tests.annotator.assertions import counts, error_list

EXPORT_FIELDS = {
    "id",
    "external_id",
    "text",
    "source",
    "label",
    "labels",
    "label_source",
    "metadata",
    "annotations",
}


def export(client: Any, project_id: int, fmt: str | None = "jsonl") -> Any:
    query = f"?format={fmt}" if fmt else ""
    return client.get(f"/api/v1/projects/{project_id}/export/{query}")


def body_text(response: Any) -> str:
    assert response.streaming, "the export is streamed"
    return b"".join(response.streaming_content).decode("utf-8")


def jsonl_rows(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body_text(response).splitlines() if line]


@pytest.fixture
def history_project(project, admin, reviewer, make_examples, annotate) -> Any:
    """A project whose examples have every kind of history: imports, labels, relabels, reviews, none."""
    imported, labeled, reviewed, unlabeled, formula = make_examples(
        project,
        admin,
        [
            {
                "external_id": "imp",
                "text": "Loved it",
                "label": "positive",
                "source": "seed",
                "metadata": {"stars": 5},
            },
            {"external_id": "lab", "text": "Meh", "metadata": {"lang": "en", "tags": ["a", "b"]}},
            {"external_id": "rev", "text": "Broke on day one", "label": "positive"},
            {"external_id": "none", "text": "No opinion yet", "source": "pool"},
            {"external_id": "fx", "text": '=HYPERLINK("http://evil")'},
        ],
    )
    annotate(labeled, admin, "neutral")
    annotate(labeled, reviewer, "negative")
    annotate(labeled, admin, "negative")
    annotate(reviewed, reviewer, "negative", kind="review", note="clearly negative")
    return project


# --- JSONL ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_jsonl_export_streams_every_example_once_with_its_labels_and_history(history_project, as_reviewer):
    response = export(as_reviewer, history_project.id)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    rows = jsonl_rows(response)
    assert [r["external_id"] for r in rows] == ["imp", "lab", "rev", "none", "fx"]
    assert all(set(r) >= EXPORT_FIELDS for r in rows)
    by_ext = {r["external_id"]: r for r in rows}
    assert by_ext["imp"]["label"] == "positive" and by_ext["imp"]["label_source"] == "import"
    assert by_ext["imp"]["source"] == "seed" and by_ext["imp"]["metadata"] == {"stars": 5}
    assert by_ext["lab"]["label"] == "negative" and by_ext["lab"]["labels"] == ["negative"]
    assert by_ext["rev"]["label"] == "negative" and by_ext["rev"]["label_source"] == "review"
    assert (
        by_ext["none"]["label"] is None
        and by_ext["none"]["labels"] == []
        and by_ext["none"]["annotations"] == []
    )
    assert [(a["user"], a["kind"], a["label"]) for a in by_ext["lab"]["annotations"]] == [
        ("alice", "label", "neutral"),
        ("rita", "relabel", "negative"),
        ("alice", "relabel", "negative"),
    ]
    review = by_ext["rev"]["annotations"][-1]
    assert (review["user"], review["kind"], review["label"], review["note"]) == (
        "rita",
        "review",
        "negative",
        "clearly negative",
    )
    assert all(a["created_at"] for r in rows for a in r["annotations"])
    assert by_ext["fx"]["text"] == '=HYPERLINK("http://evil")'  # JSONL carries the text unchanged


@pytest.mark.django_db
def test_jsonl_is_the_default_format(history_project, as_admin):
    response = export(as_admin, history_project.id, fmt=None)

    assert response.status_code == 200
    assert len(jsonl_rows(response)) == 5


@pytest.mark.django_db
def test_export_reads_in_chunks_without_losing_or_repeating_examples(
    project, admin, as_admin, make_examples, monkeypatch
):
    monkeypatch.setattr(export_selectors, "EXPORT_CHUNK", 3)
    examples = make_examples(project, admin, [{"text": f"text {i}", "label": "neutral"} for i in range(10)])

    rows = jsonl_rows(export(as_admin, project.id))

    assert [r["id"] for r in rows] == [e.id for e in examples]
    assert all(len(r["annotations"]) == 1 for r in rows)


@pytest.mark.django_db
def test_multi_label_export_lists_labels_in_project_order(multi_project, admin, as_admin, make_examples):
    make_examples(
        multi_project, admin, [{"external_id": "m", "text": "chef runs", "labels": ["tech", "sports"]}]
    )

    [row] = jsonl_rows(export(as_admin, multi_project.id))

    assert row["label"] is None
    assert row["labels"] == ["sports", "tech"]
    assert row["annotations"][0]["labels"] == ["sports", "tech"]


@pytest.mark.django_db
def test_an_empty_project_exports_nothing(project, as_admin):
    response = export(as_admin, project.id)

    assert response.status_code == 200
    assert body_text(response).strip() == ""


# --- CSV ------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_csv_export_has_one_row_per_example_with_history_as_json(history_project, as_reviewer):
    response = export(as_reviewer, history_project.id, "csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(body_text(response))))
    assert set(records[0]) >= EXPORT_FIELDS
    assert [r["external_id"] for r in records] == ["imp", "lab", "rev", "none", "fx"]
    by_ext = {r["external_id"]: r for r in records}
    assert by_ext["lab"]["label"] == "negative" and by_ext["lab"]["labels"] == "negative"
    assert json.loads(by_ext["imp"]["metadata"]) == {"stars": 5}
    history = json.loads(by_ext["lab"]["annotations"])
    assert [(a["user"], a["kind"], a["label"]) for a in history][0] == ("alice", "label", "neutral")
    assert by_ext["none"]["label"] == "" and json.loads(by_ext["none"]["annotations"]) == []


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tTAB"])
def test_csv_export_guards_formula_like_text_with_a_leading_apostrophe(
    project, admin, as_admin, make_examples, text
):
    make_examples(project, admin, [{"external_id": "f", "text": text}])

    [record] = list(csv.DictReader(io.StringIO(body_text(export(as_admin, project.id, "csv")))))

    assert record["text"] == "'" + text


@pytest.mark.django_db
def test_csv_export_leaves_ordinary_text_alone(project, admin, as_admin, make_examples):
    make_examples(project, admin, [{"external_id": "p", "text": '1 + 1 = 2, "quoted", and a\nnew line'}])

    [record] = list(csv.DictReader(io.StringIO(body_text(export(as_admin, project.id, "csv")))))

    assert record["text"] == '1 + 1 = 2, "quoted", and a\nnew line'


@pytest.mark.django_db
def test_multi_label_csv_joins_labels_with_a_bar(multi_project, admin, as_admin, make_examples):
    make_examples(
        multi_project, admin, [{"external_id": "m", "text": "chef codes", "labels": ["food", "tech"]}]
    )

    [record] = list(csv.DictReader(io.StringIO(body_text(export(as_admin, multi_project.id, "csv")))))

    assert record["labels"] == "food|tech" and record["label"] == ""


@pytest.mark.django_db
def test_an_unknown_format_is_refused(project, as_admin):
    response = export(as_admin, project.id, "xlsx")

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "format"


@pytest.mark.django_db
def test_export_of_an_unknown_project_is_404(project, as_admin):
    assert export(as_admin, project.id + 999).status_code == 404


# --- round trip -----------------------------------------------------------------------------------------
def summary(
    project: Any,
) -> dict[str, tuple[list[str], str, str, dict[str, Any], list[tuple[str, str, list[str]]]]]:
    """Per external_id: current labels, text, source, metadata, and the (user, kind, labels) history."""
    out = {}
    for example in Example.objects.filter(project=project).prefetch_related("annotations__user"):
        history = [(a.user.username, a.kind, a.labels) for a in example.annotations.order_by("id")]
        labels = list(example.labels.order_by("position").values_list("name", flat=True))
        out[example.external_id] = (labels, example.text, example.source, example.metadata, history)
    return out


def history_times(project: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ext, created_at in (
        Annotation.objects.filter(example__project=project)
        .order_by("id")
        .values_list("example__external_id", "created_at")
    ):
        out.setdefault(ext, []).append(created_at.isoformat())
    return out


@pytest.mark.django_db
def test_export_then_import_through_the_api_reproduces_labels_and_history(
    history_project, make_project, admin, as_admin
):
    exported = jsonl_rows(export(as_admin, history_project.id))
    copy = make_project(admin, name="Copy")

    response = as_admin.post(f"/api/v1/projects/{copy.id}/examples/", exported, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["created"] == len(exported)
    assert summary(copy) == summary(history_project)
    assert history_times(copy) == history_times(history_project)


@pytest.mark.django_db
def test_export_then_import_with_the_command_reproduces_labels_and_history(
    history_project, make_project, admin, as_admin, tmp_path
):
    path = tmp_path / "export.jsonl"
    path.write_text(body_text(export(as_admin, history_project.id)), encoding="utf-8")
    copy = make_project(admin, name="Copy")

    call_command("import_examples", str(path), project=copy.id, user="alice", stdout=io.StringIO())

    assert summary(copy) == summary(history_project)
    assert history_times(copy) == history_times(history_project)


@pytest.mark.django_db
def test_export_then_import_of_a_multi_label_project_keeps_every_label(
    multi_project, admin, reviewer, as_admin, make_project, make_examples, annotate
):
    first, _ = make_examples(
        multi_project,
        admin,
        [
            {"external_id": "a", "text": "chef codes", "labels": ["food", "tech"]},
            {"external_id": "b", "text": "nothing yet"},
        ],
    )
    annotate(first, reviewer, "sports", kind="review")
    exported = jsonl_rows(export(as_admin, multi_project.id))
    copy = make_project(admin, name="Copy", task="multi_label", labels=["sports", "food", "tech"])

    response = as_admin.post(f"/api/v1/projects/{copy.id}/examples/", exported, format="json")

    assert response.status_code == 201, response.json()
    assert summary(copy) == summary(multi_project)


@pytest.mark.django_db
def test_importing_an_export_into_the_same_project_changes_nothing(history_project, as_admin):
    exported = jsonl_rows(export(as_admin, history_project.id))
    before = counts()

    response = as_admin.post(f"/api/v1/projects/{history_project.id}/examples/", exported, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["created"] == 0
    assert response.json()["ids"] == [r["id"] for r in exported]
    assert counts() == before


@pytest.mark.django_db
def test_a_reviewer_cannot_import_an_export_that_carries_history(
    history_project, make_project, admin, reviewer, api_client
):
    exported = jsonl_rows(export(api_client(admin), history_project.id))
    copy = make_project(admin, name="Copy", members={reviewer: Role.REVIEWER})
    before = counts()

    response = api_client(reviewer).post(f"/api/v1/projects/{copy.id}/examples/", exported, format="json")

    assert response.status_code == 400
    assert {e["field"] for e in error_list(response)} == {"annotations"}
    assert counts() == before
