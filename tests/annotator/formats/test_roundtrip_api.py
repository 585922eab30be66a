"""Export -> import into a new project -> compare, through the API, for Label Studio JSON and Parquet."""

from __future__ import annotations

import json
from typing import Any

import pytest

from annotator.models import ExampleScore, Role
from tests.annotator.assertions import counts, error_list
from tests.annotator.formats.conftest import body_bytes, history_counts, history_times, parquet_table, summary
from tests.annotator.views import factories

PARQUET = "application/vnd.apache.parquet"


def export(client: Any, project_id: int, fmt: str) -> Any:
    return client.get(f"/api/v1/projects/{project_id}/export/?format={fmt}")


def import_as(client: Any, project_id: int, fmt: str, body: Any) -> Any:
    url = f"/api/v1/projects/{project_id}/examples/?format={fmt}"
    if fmt == "parquet":
        return client.post(url, body, content_type=PARQUET)
    return client.post(url, body, format="json")


# --- Label Studio ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_labelstudio_export_is_a_list_of_tasks_with_choices_per_answer(rich_project, as_reviewer):
    response = export(as_reviewer, rich_project.id, "labelstudio")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert 'filename="project-' in response["Content-Disposition"]
    tasks = json.loads(body_bytes(response))
    assert [t["data"]["text"] for t in tasks] == ["Loved it", 'Meh, "fine" — ça va', "<b>Broke</b> on day one",
                                                  "No opinion yet", "=SUM(A1)"]
    lab = tasks[1]
    assert [a["result"][0]["value"]["choices"] for a in lab["annotations"]] == [["neutral"], ["negative"],
                                                                                 ["negative"]]
    assert {(r["type"], r["from_name"], r["to_name"]) for a in lab["annotations"] for r in a["result"]} == {
        ("choices", "label", "text")}
    assert [a["relabel"]["user"] for a in lab["annotations"]] == ["alice", "rita", "alice"]
    assert all("completed_by" not in a for t in tasks for a in t["annotations"])
    assert lab["meta"]["lang"] == "fr" and lab["meta"]["relabel"]["external_id"] == "lab"
    assert tasks[3]["annotations"] == [] and tasks[3]["predictions"] == []


@pytest.mark.django_db
def test_labelstudio_export_carries_the_serving_versions_prediction(project, admin, as_admin):
    noisy = factories.noisy_version(project, admin)

    tasks = json.loads(body_bytes(export(as_admin, project.id, "labelstudio")))

    first = tasks[0]["predictions"]
    assert len(first) == 1
    assert first[0]["model_version"] == "v1" and first[0]["score"] == pytest.approx(0.7)
    assert first[0]["result"][0]["value"]["choices"] == [noisy["suggested"][0]]
    assert ExampleScore.objects.count() == len(tasks)


@pytest.mark.django_db
def test_labelstudio_round_trip_keeps_texts_labels_history_and_metadata(rich_project, make_project, admin, as_admin):
    tasks = json.loads(body_bytes(export(as_admin, rich_project.id, "labelstudio")))
    copy = make_project(admin, name="Copy")

    response = import_as(as_admin, copy.id, "labelstudio", tasks)

    assert response.status_code == 201, response.json()
    assert response.json()["created"] == 5
    assert summary(copy) == summary(rich_project)
    assert history_counts(copy) == {"imp": 1, "lab": 3, "rev": 2, "none": 0, "prod": 0}
    assert history_times(copy) == history_times(rich_project)


@pytest.mark.django_db
def test_labelstudio_round_trip_of_a_multi_label_project(multi_project, admin, reviewer, as_admin, make_project,
                                                         make_examples, annotate):
    first, _ = make_examples(multi_project, admin, [{"external_id": "a", "text": "chef codes",
                                                     "labels": ["food", "tech"]},
                                                    {"external_id": "b", "text": "nothing yet"}])
    annotate(first, reviewer, "sports", kind="review")
    tasks = json.loads(body_bytes(export(as_admin, multi_project.id, "labelstudio")))
    copy = make_project(admin, name="Copy", task="multi_label", labels=["sports", "food", "tech"])

    response = import_as(as_admin, copy.id, "labelstudio", tasks)

    assert response.status_code == 201, response.json()
    assert tasks[0]["annotations"][0]["result"][0]["value"]["choices"] == ["food", "tech"]
    assert summary(copy) == summary(multi_project)


@pytest.mark.django_db
def test_importing_a_labelstudio_export_into_the_same_project_changes_nothing(rich_project, as_admin):
    tasks = json.loads(body_bytes(export(as_admin, rich_project.id, "labelstudio")))
    before = counts()

    response = import_as(as_admin, rich_project.id, "labelstudio", tasks)

    assert response.status_code == 201 and response.json()["created"] == 0
    assert counts() == before


# --- Parquet --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_parquet_export_has_a_classlabel_named_with_the_projects_labels(rich_project, as_reviewer, tmp_path):
    datasets = pytest.importorskip("datasets")
    response = export(as_reviewer, rich_project.id, "parquet")

    assert response.status_code == 200
    assert response["Content-Type"] == PARQUET
    path = tmp_path / "export.parquet"
    path.write_bytes(body_bytes(response))
    dataset = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "cache"))
    assert dataset.features["label"] == datasets.ClassLabel(names=["positive", "negative", "neutral"])
    assert dataset.num_rows == 5
    by_ext = {row["external_id"]: row for row in dataset}
    assert dataset.features["label"].int2str(by_ext["lab"]["label"]) == "negative"
    assert by_ext["none"]["label"] == -1
    assert by_ext["lab"]["metadata"] == {"lang": "fr", "tags": ["a", "b"]}
    assert [a["user"] for a in by_ext["lab"]["annotations"]] == ["alice", "rita", "alice"]


@pytest.mark.django_db
def test_parquet_round_trip_keeps_texts_labels_history_and_metadata(rich_project, make_project, admin, as_admin):
    data = body_bytes(export(as_admin, rich_project.id, "parquet"))
    copy = make_project(admin, name="Copy")

    response = import_as(as_admin, copy.id, "parquet", data)

    assert response.status_code == 201, response.json()
    assert response.json()["created"] == 5
    assert summary(copy) == summary(rich_project)
    assert history_counts(copy) == {"imp": 1, "lab": 3, "rev": 2, "none": 0, "prod": 0}
    assert history_times(copy) == history_times(rich_project)


@pytest.mark.django_db
def test_parquet_round_trip_of_a_multi_label_project(multi_project, admin, as_admin, make_project, make_examples):
    make_examples(multi_project, admin, [{"external_id": "a", "text": "chef codes", "labels": ["food", "tech"]},
                                         {"external_id": "b", "text": "nothing yet"}])
    data = body_bytes(export(as_admin, multi_project.id, "parquet"))
    copy = make_project(admin, name="Copy", task="multi_label", labels=["sports", "food", "tech"])

    response = import_as(as_admin, copy.id, "parquet", data)

    assert response.status_code == 201, response.json()
    assert parquet_table(data).column("labels").to_pylist() == [[1, 2], []]
    assert summary(copy) == summary(multi_project)


@pytest.mark.django_db
def test_an_empty_project_exports_an_empty_parquet_file_with_its_schema(project, as_admin):
    table = parquet_table(body_bytes(export(as_admin, project.id, "parquet")))

    assert table.num_rows == 0
    assert {"text", "label", "annotations", "metadata"} <= set(table.column_names)


# --- the API's checks -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_unknown_import_format_is_a_400_naming_the_field(project, as_admin):
    before = counts()

    response = import_as(as_admin, project.id, "xlsx", [{"text": "a"}])

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == "format"
    assert counts() == before


@pytest.mark.django_db
def test_a_parquet_import_with_a_json_body_is_refused(project, as_admin):
    response = as_admin.post(f"/api/v1/projects/{project.id}/examples/?format=parquet", [{"text": "a"}],
                             format="json")

    assert response.status_code == 400
    assert "Parquet file itself" in error_list(response)[0]["message"]


@pytest.mark.django_db
def test_a_body_that_is_not_parquet_is_a_400(project, as_admin):
    response = import_as(as_admin, project.id, "parquet", b"PAR1 but not really")

    assert response.status_code == 400
    assert "not a readable Parquet file" in error_list(response)[0]["message"]
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_formats_keep_the_roles_of_import_and_export(rich_project, as_annotator, api_client, outsider, reviewer,
                                                     make_project, admin):
    tasks = json.loads(body_bytes(export(api_client(admin), rich_project.id, "labelstudio")))
    copy = make_project(admin, name="Copy", members={reviewer: Role.REVIEWER})
    before = counts()

    assert export(as_annotator, rich_project.id, "labelstudio").status_code == 403
    assert export(api_client(outsider), rich_project.id, "parquet").status_code == 404
    assert import_as(as_annotator, rich_project.id, "labelstudio", tasks).status_code == 403
    refused = import_as(api_client(reviewer), copy.id, "labelstudio", tasks)
    assert refused.status_code == 400
    assert {e["field"] for e in error_list(refused)} == {"annotations"}
    assert counts() == before
