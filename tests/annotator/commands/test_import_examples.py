"""``manage.py import_examples``: CSV or JSONL files, all or nothing, problems named by file line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotator.models import Annotation, Example, Role
from tests.annotator.assertions import counts


def run(path: Path, project: Any, user: str = "alice", **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_examples", str(path), project=project.id, user=user, stdout=out, stderr=err, **options
    )
    return out.getvalue(), err.getvalue()


def refused(path: Path, project: Any, user: str = "alice", **options: Any) -> tuple[str, str]:
    """Run expecting failure: the CommandError message and what went to stderr."""
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "import_examples",
            str(path),
            project=project.id,
            user=user,
            stdout=io.StringIO(),
            stderr=err,
            **options,
        )
    return str(raised.value), err.getvalue()


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def labels_by_external_id(project: Any) -> dict[str, list[str]]:
    return {
        e.external_id: [label.name for label in e.labels.order_by("position")]
        for e in Example.objects.filter(project=project)
    }


@pytest.fixture
def existing(project, admin, make_examples):
    return make_examples(project, admin, [{"external_id": "old", "text": "already here", "label": "neutral"}])


@pytest.mark.django_db
def test_a_csv_file_is_imported_with_labels_recorded_for_the_named_user(project, reviewer, tmp_path):
    path = write(
        tmp_path,
        "reviews.csv",
        'external_id,text,label,source\nr1,Great,positive,\nr2,"Bad, really",negative,seed\nr3,Hmm,,\n',
    )

    out, _ = run(path, project, user="rita", source="pool")

    assert "3 created, 0 unchanged" in out
    assert labels_by_external_id(project) == {"r1": ["positive"], "r2": ["negative"], "r3": []}
    assert dict(Example.objects.values_list("external_id", "source")) == {
        "r1": "pool",
        "r2": "seed",
        "r3": "pool",
    }
    assert set(Annotation.objects.values_list("user__username", "kind")) == {("rita", "import")}


@pytest.mark.django_db
def test_a_jsonl_file_is_imported(multi_project, tmp_path):
    path = write(
        tmp_path,
        "rows.jsonl",
        '{"external_id": "a", "text": "goal!", "labels": ["sports"], "metadata": {"lang": "en"}}\n'
        '\n{"external_id": "b", "text": "pasta code", "labels": ["tech", "food"]}\n',
    )

    out, _ = run(path, multi_project)

    assert "2 created" in out
    assert labels_by_external_id(multi_project) == {"a": ["sports"], "b": ["food", "tech"]}
    assert Example.objects.get(external_id="a").metadata == {"lang": "en"}


@pytest.mark.django_db
def test_running_the_same_file_again_changes_nothing(project, tmp_path):
    path = write(tmp_path, "reviews.csv", "external_id,text,label\nr1,Great,positive\nr2,Bad,negative\n")
    run(path, project)
    before = counts()

    out, _ = run(path, project)

    assert "0 created, 2 unchanged, 0 updated" in out
    assert counts() == before


@pytest.mark.django_db
def test_the_format_and_column_names_can_be_given(project, tmp_path):
    path = write(tmp_path, "export.txt", "uid;body;category\n7;Fine;neutral\n")

    run(path, project, format="csv", text_column="body", label_column="category", id_column="uid")

    assert labels_by_external_id(project) == {"7": ["neutral"]}


@pytest.mark.django_db
def test_a_file_may_hold_more_rows_than_one_api_request(project, tmp_path):
    path = write(tmp_path, "big.csv", "text\n" + "".join(f"row {i}\n" for i in range(10_001)))

    out, _ = run(path, project)

    assert "10001 created" in out
    assert Example.objects.filter(project=project).count() == 10_001


# --- problems: reported with their line, nothing written ------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("name", ["broken.csv", "broken.jsonl"])
def test_a_broken_utf8_byte_is_reported_with_its_line_and_nothing_is_written(
    project, existing, tmp_path, name
):
    if name.endswith(".csv"):
        content = b"text,label\nfine,positive\nalso fine,negative\ncaf\xe9,neutral\n"
    else:
        content = b'{"text": "fine"}\n{"text": "also fine"}\n{"text": "caf\xe9"}\n'
    line = 4 if name.endswith(".csv") else 3
    path = write(tmp_path, name, content)
    before = counts()

    message, stderr = refused(path, project)

    assert f"line {line}" in stderr and "UTF-8" in stderr
    assert "nothing was imported" in message
    assert counts() == before


@pytest.mark.django_db
def test_a_bad_csv_row_is_reported_with_its_line_and_nothing_is_written(project, existing, tmp_path):
    path = write(
        tmp_path,
        "reviews.csv",
        'text,label\nfine,positive\n"two\nlines",negative\nangry words,furious\nok,neutral\n',
    )
    before = counts()

    message, stderr = refused(path, project)

    assert "line 5" in stderr and "furious" in stderr
    assert "1 problem" in message
    assert counts() == before


@pytest.mark.django_db
def test_every_bad_jsonl_row_is_reported_with_its_line(project, existing, tmp_path):
    path = write(
        tmp_path,
        "rows.jsonl",
        '{"text": "fine"}\n\n{"text": ""}\n{"text": "ok", "label": "nope"}\n{"text": "broken"\n',
    )
    before = counts()

    _, stderr = refused(path, project)

    assert "line 5" in stderr and "malformed JSON" in stderr
    assert counts() == before


@pytest.mark.django_db
def test_bad_values_in_jsonl_rows_are_reported_with_their_lines(project, existing, tmp_path):
    path = write(
        tmp_path, "rows.jsonl", '{"text": "fine"}\n\n{"text": ""}\n{"text": "ok", "label": "nope"}\n'
    )
    before = counts()

    _, stderr = refused(path, project)

    assert [line.split(":")[0] for line in stderr.splitlines()] == ["line 3", "line 4"]
    assert counts() == before


@pytest.mark.django_db
def test_a_known_external_id_with_another_text_is_reported_with_its_line(project, existing, tmp_path):
    path = write(tmp_path, "reviews.csv", "external_id,text\nnew,fresh\nold,a different text\n")
    before = counts()

    _, stderr = refused(path, project)

    assert "line 3" in stderr and "different text" in stderr
    assert counts() == before


@pytest.mark.django_db
def test_a_csv_without_a_text_column_is_refused(project, tmp_path):
    _, stderr = refused(write(tmp_path, "r.csv", "body,label\nhi,positive\n"), project)

    assert "line 1" in stderr and "'text'" in stderr
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_an_unknown_file_extension_needs_a_format(project, tmp_path):
    _, stderr = refused(write(tmp_path, "rows.xlsx", "text\nhi\n"), project)

    assert "format" in stderr
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_missing_file_is_refused(project, tmp_path):
    message, _ = refused(tmp_path / "nowhere.csv", project)

    assert "no such file" in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user", "expected"),
    [("anna", "admin or reviewer"), ("oscar", "admin or reviewer"), ("ghost", "unknown")],
)
def test_only_admins_and_reviewers_of_the_project_can_import(project, outsider, tmp_path, user, expected):
    message, _ = refused(write(tmp_path, "r.csv", "text\nhi\n"), project, user=user)

    assert expected in message
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_an_unknown_project_is_refused(admin, tmp_path):
    err = io.StringIO()
    with pytest.raises(CommandError, match="unknown project"):
        call_command(
            "import_examples",
            str(write(tmp_path, "r.csv", "text\nhi\n")),
            project=999_999,
            user="alice",
            stderr=err,
        )


# --- history -------------------------------------------------------------------------------------------
HISTORY_ROW = {
    "external_id": "h",
    "text": "was it good?",
    "label": "negative",
    "annotations": [
        {"user": "anna", "kind": "label", "label": "positive", "created_at": "2024-01-02T03:04:05+00:00"},
        {
            "user": "rita",
            "kind": "review",
            "label": "negative",
            "note": "no",
            "created_at": "2024-01-03T00:00:00Z",
        },
        {"user": "left-the-company", "kind": "relabel", "label": "neutral"},
    ],
}


@pytest.mark.django_db
def test_an_admin_imports_annotation_history_with_its_authors_and_times(project, tmp_path):
    path = write(tmp_path, "history.jsonl", json.dumps(HISTORY_ROW) + "\n")

    run(path, project, user="alice")

    history = list(Annotation.objects.order_by("id").values_list("user__username", "kind", "labels", "note"))
    assert history[:2] == [("anna", "label", ["positive"], ""), ("rita", "review", ["negative"], "no")]
    # An author with no account here is kept in the note, under the importing user's name.
    assert history[2][:3] == ("alice", "relabel", ["neutral"]) and "left-the-company" in history[2][3]
    times = [a.created_at.isoformat() for a in Annotation.objects.order_by("id")[:2]]
    assert times == ["2024-01-02T03:04:05+00:00", "2024-01-03T00:00:00+00:00"]
    assert labels_by_external_id(project) == {"h": ["negative"]}  # the review decides


@pytest.mark.django_db
def test_a_reviewer_cannot_import_annotation_history(project, tmp_path):
    path = write(tmp_path, "history.jsonl", "\n" + json.dumps(HISTORY_ROW) + "\n")

    _, stderr = refused(path, project, user="rita")

    assert "line 2" in stderr and "admin" in stderr
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_csv_export_imports_back_with_labels_history_and_formula_like_text(
    project, admin, reviewer, make_examples, annotate, make_project, as_admin, tmp_path
):
    guarded, labeled, _ = make_examples(
        project,
        admin,
        [
            {"external_id": "f", "text": "=SUM(A1:A3) is my rating", "label": "positive"},
            {"external_id": "l", "text": '-5 stars, "awful"\nnever again', "metadata": {"k": [1, 2]}},
            {"external_id": "u", "text": "no label"},
        ],
    )
    annotate(labeled, reviewer, "negative")
    annotate(guarded, reviewer, "neutral", kind="review")
    response = as_admin.get(f"/api/v1/projects/{project.id}/export/?format=csv")
    path = write(tmp_path, "export.csv", b"".join(response.streaming_content))
    copy = make_project(admin, name="Copy", members={reviewer: Role.REVIEWER})

    run(path, copy)

    original = {e.external_id: e for e in Example.objects.filter(project=project)}
    copied = {e.external_id: e for e in Example.objects.filter(project=copy)}
    assert {k: (e.text, e.metadata) for k, e in copied.items()} == {
        k: (e.text, e.metadata) for k, e in original.items()
    }
    assert labels_by_external_id(copy) == labels_by_external_id(project)
    assert {k: e.annotations.count() for k, e in copied.items()} == {
        k: e.annotations.count() for k, e in original.items()
    }
