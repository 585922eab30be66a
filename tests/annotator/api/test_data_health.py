"""GET noise-report/conflicts/, POST noise-report/conflicts/settle/ and GET health/ (reviewer): conflicting
near-duplicates by group, settling a group in one request, outliers and class health."""

from __future__ import annotations

import pytest

from annotator.models import Example
from tests.annotator.assertions import counts, error_list
from tests.annotator.health_rows import health_examples, health_version


@pytest.fixture
def healthy(project, admin):
    examples = health_examples(project, admin)
    return {"examples": examples, "version": health_version(project, examples)}


def _conflicts(client, project):
    return client.get(f"/api/v1/projects/{project.id}/noise-report/conflicts/")


def _settle(client, project, body):
    return client.post(f"/api/v1/projects/{project.id}/noise-report/conflicts/settle/", body, format="json")


def test_identical_texts_with_different_labels_are_listed_as_one_group(project, as_reviewer, healthy):
    response = _conflicts(as_reviewer, project)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1 and body["next"] is None and body["previous"] is None
    assert body["model_version"] == healthy["version"].number and body["threshold"] == 0.95
    group = body["results"][0]
    assert group["identical"] and group["score"] == 1.0 and group["size"] == 3
    assert group["majority_label"] == "negative" and group["majority_labels"] == ["negative"]
    members = group["members"]
    assert [m["example_id"] for m in members] == [e.id for e in healthy["examples"][:3]]
    assert [m["label"] for m in members] == ["negative", "positive", "negative"]
    assert members[1] == {"example_id": healthy["examples"][1].id, "external_id": "h-1",
                          "text": "the delivery was LATE again", "label": "positive", "labels": ["positive"],
                          "label_at_training": "positive", "labels_at_training": ["positive"], "settled": False,
                          "confirmations": 0}


def test_settling_the_group_relabels_every_member_and_closes_it(project, as_reviewer, healthy):
    ids = [e.id for e in healthy["examples"][:3]]

    response = _settle(as_reviewer, project, {"example_ids": ids, "label": "negative"})

    assert response.status_code == 200
    assert response.json() == {"settled": 3, "changed": 1, "example_ids": ids, "label": "negative",
                               "labels": ["negative"]}
    assert all(e.settled for e in Example.objects.filter(id__in=ids))
    assert _conflicts(as_reviewer, project).json()["count"] == 0  # settled with one label: no longer open


def test_a_group_settled_member_by_member_to_different_labels_stays_open(project, as_reviewer, healthy):
    first, second = healthy["examples"][:2]
    _settle(as_reviewer, project, {"example_ids": [first.id], "label": "negative"})
    _settle(as_reviewer, project, {"example_ids": [second.id], "label": "positive"})

    group = _conflicts(as_reviewer, project).json()["results"][0]

    assert [m["settled"] for m in group["members"]] == [True, True, False]


@pytest.mark.parametrize(("body", "field"), [
    ({"example_ids": [], "label": "negative"}, "example_ids"),
    ({"example_ids": "1,2", "label": "negative"}, "example_ids"),
    ({"label": "negative"}, "example_ids"),
    ({"example_ids": "MEMBERS", "label": "no-such-label"}, "label"),
    ({"example_ids": "MEMBERS"}, "label"),
    ({"example_ids": "MEMBERS+MISSING", "label": "negative"}, "example_ids"),
])
def test_bad_input_is_400_naming_the_field_and_writes_nothing(project, as_reviewer, healthy, body, field):
    ids = [e.id for e in healthy["examples"][:3]]
    body = {**body}
    if body.get("example_ids") == "MEMBERS":
        body["example_ids"] = ids
    elif body.get("example_ids") == "MEMBERS+MISSING":
        body["example_ids"] = [*ids, 999_999]
    before = counts()

    response = _settle(as_reviewer, project, body)

    assert response.status_code == 400
    assert {e.get("field") for e in error_list(response)} == {field}
    assert counts() == before
    assert _conflicts(as_reviewer, project).json()["count"] == 1


def test_a_body_that_is_not_an_object_is_400(project, as_reviewer, healthy):
    assert _settle(as_reviewer, project, [1, 2]).status_code == 400


def test_health_lists_outliers_worst_first_and_class_health(project, as_reviewer, healthy):
    response = as_reviewer.get(f"/api/v1/projects/{project.id}/health/?page_size=3")

    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == healthy["version"].number
    assert body["method"] in ("datalab", "cleanlab-rules")
    assert [c["label"] for c in body["classes"]] == ["positive", "negative", "neutral"]
    assert [c["n"] for c in body["classes"]] == [5, 4, 1]
    assert "neutral" in body["too_small"]
    assert body["class_imbalance"]["rarest"] == "neutral"
    outliers = body["outliers"]
    assert outliers["n_flagged"] >= 1
    page = outliers["examples"]
    assert page["count"] == 10 and len(page["results"]) == 3 and page["next"]
    worst = page["results"][0]
    far = healthy["examples"][-1]
    assert (worst["example_id"], worst["text"], worst["label"], worst["is_outlier"]) == (far.id, far.text, "positive",
                                                                                         True)
    assert worst["predicted"] == "positive"


def test_without_a_version_both_say_so(project, as_reviewer):
    conflicts = _conflicts(as_reviewer, project).json()
    health = as_reviewer.get(f"/api/v1/projects/{project.id}/health/").json()

    assert conflicts["model_version"] is None and conflicts["count"] == 0 and conflicts["results"] == []
    assert health["model_version"] is None and health["outliers"] is None and health["classes"] == []


@pytest.mark.parametrize(("who", "status"), [("admin", 200), ("reviewer", 200), ("annotator", 403), ("outsider", 404)])
def test_roles(project, healthy, api_client, admin, reviewer, annotator, outsider, who, status):
    client = api_client({"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider}[who])
    ids = [e.id for e in healthy["examples"][:3]]
    before = counts()

    assert _conflicts(client, project).status_code == status
    assert client.get(f"/api/v1/projects/{project.id}/health/").status_code == status
    settle = _settle(client, project, {"example_ids": ids, "label": "negative"})

    assert settle.status_code == status
    if status != 200:
        assert counts() == before


def test_the_schema_lists_the_endpoints_with_their_fields(api_client, db):
    schema = api_client().get("/api/schema/?format=json").json()

    paths = schema["paths"]
    assert "get" in paths["/api/v1/projects/{project_id}/noise-report/conflicts/"]
    assert "post" in paths["/api/v1/projects/{project_id}/noise-report/conflicts/settle/"]
    assert "get" in paths["/api/v1/projects/{project_id}/health/"]
    components = schema["components"]["schemas"]
    assert {"example_id", "text", "label", "settled"} <= set(components["ConflictMemberOut"]["properties"])
    assert {"classes", "outliers", "too_small"} <= set(components["HealthOut"]["properties"])
