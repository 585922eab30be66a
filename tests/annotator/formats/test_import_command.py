"""``manage.py import_examples`` with Label Studio JSON, Parquet and saved Hugging Face dataset directories:
labels through ClassLabel names, extra columns kept as metadata, problems named by task or row, all or nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotator.models import Annotation, Example
from tests.annotator.assertions import counts
from tests.annotator.formats.conftest import summary

datasets = pytest.importorskip("datasets")


def run(path: Path, project: Any, user: str = "alice", **options: Any) -> str:
    out = io.StringIO()
    call_command("import_examples", str(path), project=project.id, user=user, stdout=out, stderr=io.StringIO(),
                 **options)
    return out.getvalue()


def refused(path: Path, project: Any, user: str = "alice", **options: Any) -> tuple[str, str]:
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_examples", str(path), project=project.id, user=user, stdout=io.StringIO(),
                     stderr=err, **options)
    return str(raised.value), err.getvalue()


def labels_of(project: Any) -> dict[str, list[str]]:
    return {e.external_id: [label.name for label in e.labels.order_by("position")]
            for e in Example.objects.filter(project=project)}


def to_parquet(tmp_path: Path, columns: dict[str, list[Any]], features: Any = None, name: str = "d.parquet") -> Path:
    path = tmp_path / name
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return path


# --- Parquet --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_classlabel_integers_are_mapped_through_the_features_names(project, tmp_path):
    # The dataset orders its classes differently from the project: names, not positions, decide.
    features = datasets.Features({"text": datasets.Value("string"), "external_id": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neutral", "negative", "positive"])})
    path = to_parquet(tmp_path, {"text": ["good", "bad", "meh", "later"], "external_id": ["g", "b", "m", "l"],
                                 "label": [2, 1, 0, -1]}, features)

    out = run(path, project)

    assert "4 created" in out
    assert labels_of(project) == {"g": ["positive"], "b": ["negative"], "m": ["neutral"], "l": []}
    assert set(Annotation.objects.values_list("user__username", "kind")) == {("alice", "import")}


@pytest.mark.django_db
def test_string_labels_other_columns_as_metadata_and_a_json_metadata_column(project, tmp_path):
    path = to_parquet(tmp_path, {"sentence": ["good", "bad"], "label": ["positive", None], "idx": [10, 11],
                                 "metadata": ['{"lang": "en"}', None]})

    run(path, project, text_column="sentence")

    rows = {e.text: e for e in Example.objects.filter(project=project)}
    assert rows["good"].metadata == {"idx": 10, "lang": "en"} and rows["bad"].metadata == {"idx": 11}
    assert labels_of(project)[rows["good"].external_id] == ["positive"]
    assert not rows["bad"].labels.exists()


@pytest.mark.django_db
def test_multi_label_lists_of_classlabels(multi_project, admin, tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.List(datasets.ClassLabel(names=["tech", "food", "sports"]))})
    path = to_parquet(tmp_path, {"text": ["chef codes", "nothing"], "labels": [[0, 1], []]}, features)

    run(path, multi_project)

    by_text = {e.text: [label.name for label in e.labels.order_by("position")]
               for e in Example.objects.filter(project=multi_project)}
    assert by_text == {"chef codes": ["food", "tech"], "nothing": []}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("columns", "features", "message"),
    [
        ({"text": ["a", "b"], "label": [0, 1]}, None,
         "row 0: label is the integer 0 but the column has no ClassLabel feature"),
        ({"text": ["a", "b"], "label": ["positive", "sarcastic"]}, None, "row 1: unknown label 'sarcastic'"),
        ({"text": ["a", ""], "label": ["positive", "neutral"]}, None, "row 1: text is empty"),
        ({"text": ["a"], "blob": [b"\x00\x01"]}, None, "row 0: column 'blob' holds binary data"),
        ({"text": ["a"], "metadata": ["{oops"]}, None, "row 0: metadata is not valid JSON"),
        ({"body": ["a"]}, None, "no 'text' column; the columns are body"),
    ],
)
def test_a_bad_parquet_file_names_the_row_and_writes_nothing(project, existing, tmp_path, columns, features, message):
    path = to_parquet(tmp_path, columns, features)
    before = counts()

    error, stderr = refused(path, project)

    assert "nothing was imported" in error
    assert message in stderr
    assert counts() == before


@pytest.mark.django_db
def test_a_file_that_is_not_parquet_is_refused(project, tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_bytes(b"text,label\na,positive\n")

    _, stderr = refused(path, project)

    assert "not a readable Parquet file" in stderr


# --- saved dataset directories --------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_saved_dataset_directory_is_imported(project, tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["positive", "negative", "neutral"])})
    datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [0, 1]}, features=features).save_to_disk(
        str(tmp_path / "saved"))

    out = run(tmp_path / "saved", project)

    assert "2 created" in out
    assert sorted(sum(labels_of(project).values(), [])) == ["negative", "positive"]


@pytest.mark.django_db
def test_every_split_of_a_saved_dataset_dict_is_imported_with_its_split_in_the_metadata(project, tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["positive", "negative", "neutral"])})
    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [0, 1]}, features=features),
        "test": datasets.Dataset.from_dict({"text": ["fine"], "label": [2]}, features=features),
    })
    splits.save_to_disk(str(tmp_path / "saved"))

    run(tmp_path / "saved", project)

    assert {e.text: e.metadata["split"] for e in Example.objects.filter(project=project)} == {
        "good": "train", "bad": "train", "fine": "test"}


@pytest.mark.django_db
def test_a_bad_row_of_a_dataset_dict_names_its_split(project, tmp_path):
    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["good"], "label": ["positive"]}),
        "test": datasets.Dataset.from_dict({"text": ["odd"], "label": ["sarcastic"]}),
    })
    splits.save_to_disk(str(tmp_path / "saved"))

    _, stderr = refused(tmp_path / "saved", project)

    assert "split test, row 0: unknown label 'sarcastic'" in stderr
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_directory_that_is_not_a_saved_dataset_is_refused(project, tmp_path):
    (tmp_path / "empty").mkdir()

    _, stderr = refused(tmp_path / "empty", project)

    assert "is not a dataset saved with save_to_disk" in stderr


# --- Label Studio ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_label_studio_json_file_is_told_apart_from_jsonl_by_its_content(project, tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": {"text": "good"},
                                 "annotations": [{"result": [{"type": "choices", "from_name": "label",
                                                              "to_name": "text", "value": {"choices": ["positive"]}}]}]}]))

    out = run(path, project)

    assert "1 created" in out
    assert labels_of(project) == {"1": ["positive"]}


@pytest.mark.django_db
def test_a_label_studio_file_that_is_not_json_names_the_line(project, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"data": {"text": "a"}},\n  {"data": oops}\n]\n')

    _, stderr = refused(path, project, format="labelstudio")

    assert "not valid JSON" in stderr and "line 3" in stderr


@pytest.mark.django_db
def test_a_reviewer_imports_plain_tasks_but_not_annotation_history(project, tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([{"id": 1, "data": {"text": "good"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["positive"]}}]}]}]))

    _, stderr = refused(path, project, user="rita")

    assert "task 0: only a project admin may import annotation history" in stderr


# --- round trips through files --------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(("fmt", "name"), [("labelstudio", "export.json"), ("parquet", "export.parquet")])
def test_export_then_import_with_the_command_reproduces_the_project(rich_project, make_project, admin, as_admin,
                                                                   tmp_path, fmt, name):
    response = as_admin.get(f"/api/v1/projects/{rich_project.id}/export/?format={fmt}")
    content = b"".join(response.streaming_content) if response.streaming else response.content
    path = tmp_path / name
    path.write_bytes(content)
    copy = make_project(admin, name="Copy")

    run(path, copy)

    assert summary(copy) == summary(rich_project)


@pytest.mark.django_db
def test_an_exported_parquet_file_saved_as_a_dataset_directory_imports_back(rich_project, make_project, admin,
                                                                           as_admin, tmp_path):
    response = as_admin.get(f"/api/v1/projects/{rich_project.id}/export/?format=parquet")
    (tmp_path / "export.parquet").write_bytes(b"".join(response.streaming_content))
    dataset = datasets.Dataset.from_parquet(str(tmp_path / "export.parquet"), cache_dir=str(tmp_path / "cache"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    copy = make_project(admin, name="Copy")

    run(tmp_path / "saved", copy)

    assert summary(copy) == summary(rich_project)
