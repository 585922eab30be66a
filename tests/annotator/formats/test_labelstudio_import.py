"""Label Studio files from Label Studio itself, and malformed ones: a precise 400 naming the task, nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from annotator.models import Annotation, Example
from tests.annotator.assertions import counts, error_list


def post(client: Any, project: Any, body: Any) -> Any:
    return client.post(f"/api/v1/projects/{project.id}/examples/?format=labelstudio", body, format="json")


def choices(*names: str, from_name: str = "sentiment") -> dict[str, Any]:
    return {"id": "x1", "type": "choices", "from_name": from_name, "to_name": "text", "value": {"choices": list(names)}}


def ls_task(task_id: int, text: str, *annotations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "data": {"text": text}, "annotations": list(annotations), "predictions": [], **extra}


@pytest.mark.django_db
def test_a_file_exported_by_label_studio_is_imported(project, admin, reviewer, as_admin):
    reviewer.email = "rita@example.com"
    reviewer.save()
    tasks = [
        ls_task(7, "Great battery", {"id": 1, "completed_by": 1, "result": [choices("Positive")],
                                     "created_at": "2025-03-09T21:52:49.513742Z", "was_cancelled": False},
                {"id": 2, "completed_by": {"id": 4, "email": "RITA@example.com"}, "result": [choices("negative")],
                 "created_at": "2025-03-10T08:00:00Z"},
                meta={"batch": 3}, predictions=[{"model_version": "m1", "score": 0.4, "result": [choices("neutral")]}]),
        ls_task(8, "Skipped one", {"id": 3, "completed_by": 1, "result": [], "was_cancelled": True}),
        {"id": 9, "data": {"text": "Extra data", "url": "https://example.com/9"}},
    ]

    response = post(as_admin, project, tasks)

    assert response.status_code == 201, response.json()
    examples = {e.external_id: e for e in Example.objects.filter(project=project)}
    assert set(examples) == {"7", "8", "9"}
    history = list(Annotation.objects.filter(example=examples["7"]).order_by("id")
                   .values_list("user__username", "labels", "note", "created_at__year"))
    assert history == [("alice", ["positive"], "imported; originally by Label Studio user 1.", 2025),
                       ("rita", ["negative"], "", 2025)]
    assert list(examples["7"].labels.values_list("name", flat=True)) == ["negative"]
    assert examples["7"].metadata == {"batch": 3}
    assert not Annotation.objects.filter(example=examples["8"]).exists()  # a cancelled annotation has no label
    assert examples["9"].metadata == {"label_studio_data": {"url": "https://example.com/9"}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"data": {"text": "a"}}, "file", "must be a JSON list of tasks, not an object"),
        ([], None, "the file has no tasks"),
        (["just text"], "task", "task 0: each task must be a JSON object, not a string"),
        ([{"text": "a"}], "data", "task 0: data is missing; a Label Studio task holds its text in data.text "
                                  "(the task has text)"),
        ([{"data": {"content": "a"}}], "data.text", "task 0: data.text is missing; the text to classify must be "
                                                    "in data.text (other data fields: content)"),
        ([{"data": {"text": 5}}], "data.text", "task 0: data.text is a number, not a string"),
        ([{"data": "a"}], "data", "task 0: data must be a JSON object, not a string"),
        ([{"data": {"text": "a"}, "meta": [1]}], "meta", "task 0: meta must be a JSON object, not a list"),
        ([{"data": {"text": "a"}, "id": True}], "id", "task 0: the task id must be an integer or a string"),
        ([{"data": {"text": "a"}, "annotations": {}}], "annotations", "task 0: annotations must be a list"),
        ([{"data": {"text": "a"}, "predictions": "x"}], "predictions", "task 0: predictions must be a list"),
        ([{"data": {"text": "a"}, "annotations": [{"result": {}}]}], "annotations[0].result",
         "task 0: annotation 0: result must be a list, not an object"),
        ([{"data": {"text": "a"}, "annotations": [{"result": [{"type": "labels", "value": {}}]}]}],
         "annotations[0].result[0].type", "task 0: annotation 0, result 0: type 'labels' cannot be imported"),
        ([{"data": {"text": "a"}, "annotations": [{"result": [{"type": "choices", "value": {"choices": "pos"}}]}]}],
         "annotations[0].result[0].value.choices", "value.choices must be a list of strings"),
    ],
)
def test_a_malformed_file_is_a_precise_400_and_writes_nothing(project, existing, as_admin, body, field, message):
    before = counts()

    response = post(as_admin, project, body)

    assert response.status_code == 400
    [error] = error_list(response)
    assert error.get("field") == field
    assert message in error["message"]
    assert counts() == before


@pytest.mark.django_db
def test_an_unknown_choice_names_the_task_and_the_choice(project, existing, as_admin):
    tasks = [ls_task(1, "fine", {"result": [choices("positive")]}),
             ls_task(2, "odd", {"result": [choices("negative")]}, {"result": [choices("Sarcastic")]})]
    before = counts()

    response = post(as_admin, project, tasks)

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["index"] == 1 and error["field"] == "annotations[1].result[0].value.choices"
    assert error["message"] == ("task 1: annotation 1: unknown choice 'Sarcastic'; the project's labels are "
                                "positive, negative, neutral")
    assert counts() == before


@pytest.mark.django_db
def test_a_single_label_project_refuses_several_choices(project, as_admin):
    tasks = [ls_task(1, "both", {"result": [choices("positive", "negative")]})]

    response = post(as_admin, project, tasks)

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["field"] == "annotations[0].result"
    assert "2 choices (positive, negative) but this is a single-label project" in error["message"]
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_multi_label_project_takes_several_choices(multi_project, as_admin):
    tasks = [ls_task(1, "chef codes", {"result": [choices("tech", "food")]})]

    response = post(as_admin, multi_project, tasks)

    assert response.status_code == 201, response.json()
    assert Annotation.objects.get().labels == ["food", "tech"]


@pytest.mark.django_db
def test_every_bad_task_is_listed_and_problems_found_later_name_the_task_too(project, existing, as_admin):
    tasks = [ls_task(1, "ok"), {"data": {}}, ls_task(3, "x" * 30_000),
             ls_task(4, "late", {"result": [choices("neutral")], "created_at": "yesterday"})]
    before = counts()

    response = post(as_admin, project, tasks)

    assert response.status_code == 400
    errors = error_list(response)
    assert [e["index"] for e in errors] == [1]  # the file's structure is checked first
    fixed = [tasks[0], tasks[2], tasks[3]]
    response = post(as_admin, project, fixed)
    errors = error_list(response)
    assert [(e["index"], e["field"]) for e in errors] == [(1, "data.text"), (2, "annotations[0].created_at")]
    assert errors[0]["message"].startswith("task 1: text has 30,000 characters")
    assert errors[1]["message"].startswith("task 2: ")
    assert counts() == before


@pytest.mark.django_db
def test_the_task_id_and_a_different_text_is_refused_as_an_immutable_example(project, as_admin):
    assert post(as_admin, project, [ls_task(1, "first text")]).status_code == 201

    response = post(as_admin, project, [ls_task(1, "another text")])

    assert response.status_code == 400
    [error] = error_list(response)
    assert error["field"] == "id" and "task 0: external_id '1' already exists" in error["message"]
