"""The loop's answers are what /api/schema/ declares, field for field (annotator/api/loop_serializers.py).

Each test reaches a state whose answer has content (flagged scores, drift windows with their reference, a
version with holdout figures, data health), calls the API as a client would and checks the body against the
operation's declared schema with every object closed (tests/annotator/openapi.py). The hypothesis run
(tests/annotator/hostile/test_schemathesis.py) seldom writes a body these operations accept; these do.
"""

from __future__ import annotations

from typing import Any

import pytest

from annotator.models import Example, ExampleScore, ModelVersion, Project
from annotator.services.examples import examples_import
from annotator.services.queue import queue_add
from tests.annotator.health_rows import health_examples, health_version
from tests.annotator.openapi import assert_answer_matches_schema
from tests.annotator.views import factories

pytestmark = pytest.mark.django_db


def answer(client: Any, method: str, path: str, *, status: int, body: Any = None, **ids: int) -> dict[str, Any]:
    """``METHOD path`` (the schema's template, filled with ``ids``) answers ``status`` with a declared body."""
    response = getattr(client, method.lower())(path.format(**ids), body, format="json")
    assert response.status_code == status, response.content
    assert_answer_matches_schema(response, method, path)
    return response.json()


def flagged(project: Project, user: Any, labels: list[Any], *, noise: dict[str, Any] | None = None,
            ) -> tuple[ModelVersion, list[int]]:
    """Labeled examples that version 1 scored and flagged, worst first."""
    key = "labels" if project.is_multi_label else "label"
    rows = [{"text": f"Labeled text {i}", "external_id": f"lab-{i}", key: label} for i, label in enumerate(labels)]
    ids = examples_import(project=project, user=user, rows=rows).ids
    metrics = factories.trained_metrics(factories.LABELS)
    metrics["noise"] = noise or metrics["noise"]
    version = factories.model_version(project, 1, metrics=metrics)
    scores = ExampleScore.objects.bulk_create(
        ExampleScore(example_id=pk, model_version=version, probs=[0.2, 0.7, 0.1], predicted=["negative"],
                     confidence=0.7, entropy=0.8, margin=0.5, label_quality=0.05 * (i + 1), is_issue=True,
                     suggested_label="negative" if key == "label" else "food,tech")
        for i, pk in enumerate(ids))
    for score in scores:
        Example.objects.filter(pk=score.example_id).update(latest_score=score)
    return version, ids


# --- queue --------------------------------------------------------------------------------------------------
def test_queue_stats_next_heartbeat_skip_and_submit(project, admin, as_reviewer):
    factories.queued_examples(project, admin, n=3)
    _version, ids = flagged(project, admin, ["positive"])
    queue_add(project=project, examples=ids, reason="suspect", priority=20.0)  # scored: it carries a suggestion

    answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/queue/", status=200, project_id=project.id)
    items = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/queue/next/", status=200,
                   project_id=project.id)
    assert len(items) == 4 and any(item["suggestion"] for item in items)
    answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/queue/", status=200, project_id=project.id)
    answer(as_reviewer, "POST", "/api/v1/queue/{item_id}/heartbeat/", status=200, item_id=items[0]["id"])
    answer(as_reviewer, "POST", "/api/v1/queue/{item_id}/skip/", status=200, item_id=items[0]["id"])
    answer(as_reviewer, "POST", "/api/v1/queue/{item_id}/submit/", status=201, body={"label": "negative"},
           item_id=items[1]["id"])


# --- training and models ---------------------------------------------------------------------------------------
def test_train_answers_the_job_and_a_second_request_names_it(project, as_reviewer):
    first = answer(as_reviewer, "POST", "/api/v1/projects/{project_id}/train/", status=202, body={},
                   project_id=project.id)
    second = answer(as_reviewer, "POST", "/api/v1/projects/{project_id}/train/", status=409, body={},
                    project_id=project.id)

    assert second["job"]["id"] == first["job"]["id"] and second["errors"]


def test_models_and_promote(project, as_reviewer):
    factories.model_version(project, 1, serving=True,
                            comparison={"decision": "first version", "evidence": {"reason": "no version served yet"},
                                        "policy": "auto", "decided_at": "2024-01-01T00:00:00Z", "history": []})
    candidate = factories.model_version(project, 2, f1=0.7)
    ModelVersion.objects.create(project=project, number=3)  # still training: no figures, no decision

    body = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/models/", status=200, project_id=project.id)
    assert [row["number"] for row in body["results"]] == [3, 2, 1]
    answer(as_reviewer, "POST", "/api/v1/models/{model_id}/promote/", status=200, model_id=candidate.id)


def test_samples_before_a_version_serves(project, as_reviewer):
    body = answer(as_reviewer, "POST", "/api/v1/projects/{project_id}/samples/", status=201,
                  body=[{"text": "a new review", "metadata": {"shop": 3}, "observed_at": "2024-05-01T10:00:00Z"}],
                  project_id=project.id)

    assert body["predictions"] is None


# --- noise ----------------------------------------------------------------------------------------------------
def test_noise_report_open_and_settled_flags(project, admin, as_reviewer):
    _version, ids = flagged(project, admin, ["positive", "neutral", "positive"])
    Example.objects.filter(pk=ids[2]).update(settled=True, confirmations=2)

    report = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/noise-report/", status=200,
                    project_id=project.id)
    assert report["issues"]["count"] == 2 and report["settled"] == 1 and report["expected_errors"]["open"] == 2
    settled = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/noise-report/?settled=true", status=200,
                     project_id=project.id)
    assert settled["issues"]["count"] == 1 and "expected_errors" not in settled


def test_noise_report_of_a_multi_label_project(multi_project, admin, as_reviewer):
    per_class = [{"label": name, "estimated_noise_rate": None if name == "tech" else 0.1,
                  "estimated_missing_rate": 0.05, "n": 0 if name == "tech" else 2}
                 for name in ["sports", "food", "tech"]]
    flagged(multi_project, admin, [["sports"], ["sports", "food"]],
            noise={"estimated_noise_rate": 0.2, "per_class": per_class, "n": 2})

    report = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/noise-report/", status=200,
                    project_id=multi_project.id)
    assert report["issues"]["results"][0]["given_label"] == ["sports"]


def test_an_empty_noise_report(project, as_reviewer):
    report = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/noise-report/", status=200,
                    project_id=project.id)

    assert report["model_version"] is None and report["issues"]["results"] == []


def test_noise_decisions(project, admin, as_reviewer):
    _version, ids = flagged(project, admin, ["positive", "neutral", "positive"])

    body = answer(as_reviewer, "POST", "/api/v1/projects/{project_id}/noise-report/decisions/", status=200,
                  body=[{"example_id": ids[0], "action": "keep"},
                        {"example_id": ids[1], "action": "relabel", "label": "negative"},
                        {"example_id": ids[2], "action": "send_to_queue"}],
                  project_id=project.id)
    assert body["applied"] == 3


# --- drift ------------------------------------------------------------------------------------------------------
def test_drift_windows_with_and_without_a_recorded_reference(project, as_reviewer):
    version = factories.model_version(project, 1, serving=True)
    old, new = factories.drift_windows(project, 2, version=version)
    new.details = {"reference": {"kind": "pool", "model_version": 1, "n_pool": 900, "n_sampled": 900, "n_labeled": 60,
                                 "labeled_share": 0.0625, "built_at": "2024-05-01T10:00:00+00:00",
                                 "summary": "the unlabeled pool scored by v1", "setting": "pool"},
                   "tests": [{"name": "class_mix", "p_value": 0.001, "level": 0.00125, "significant": True,
                              "effect": True, "alert": True}]}
    new.save(update_fields=["details"])

    body = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/drift/", status=200, project_id=project.id)
    assert [w["reference"]["kind"] for w in body["results"]] == ["pool", "labeled_split"]


# --- data health ---------------------------------------------------------------------------------------------------
def test_conflicts_settle_and_health(project, admin, as_reviewer):
    examples = health_examples(project, admin)
    health_version(project, examples)

    conflicts = answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/noise-report/conflicts/", status=200,
                       project_id=project.id)
    answer(as_reviewer, "GET", "/api/v1/projects/{project_id}/health/", status=200, project_id=project.id)
    members = [m["example_id"] for m in conflicts["results"][0]["members"]]
    answer(as_reviewer, "POST", "/api/v1/projects/{project_id}/noise-report/conflicts/settle/", status=200,
           body={"example_ids": members, "label": "negative"}, project_id=project.id)
