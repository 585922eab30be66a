"""The whole loop on BBC news through the API and a real worker: import with a few wrong labels, train,
score, queue, answer, retrain automatically; the planted label errors surface in the noise report."""

from __future__ import annotations

import math

import pytest

from annotator.models import Annotation, ModelVersion, Project
from tests.annotator.loop.corpus import labeled_rows, unlabeled_rows
from tests.annotator.loop.polling import poll_job
from tests.annotator.loop.steps import TRAIN_TIMEOUT, import_rows
from tests.annotator.openapi import assert_answer_matches_schema
from training.data import BBC_LABELS

# Deliberate label errors: external id -> the wrong label given. Each article clearly belongs to its topic.
FLIPPED = {"l-business-0": "entertainment", "l-sports-0": "business", "l-tech-0": "politics"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_import_train_score_queue_answer_and_automatic_retrain(worker, loop_project, as_admin, as_annotator):
    # Given 10 labeled articles per topic, three of them with a wrong label, and 150 unlabeled ones
    project = loop_project(labels=list(BBC_LABELS), queue_size=40, retrain_after_labels=3)
    labeled = labeled_rows(BBC_LABELS, 0, 10)
    truth = {row["external_id"]: row["label"] for row in labeled}
    for row in labeled:
        row["label"] = FLIPPED.get(row["external_id"], row["label"])
    unlabeled = unlabeled_rows(BBC_LABELS, 10, 40)
    truth.update({row["external_id"]: row["external_id"].split("-")[1] for row in unlabeled})
    labeled_ids = import_rows(as_admin, project.id, labeled)
    unlabeled_ids = import_rows(as_admin, project.id, unlabeled)
    flipped_ids = {pk for pk, row in zip(labeled_ids, labeled, strict=True) if row["external_id"] in FLIPPED}

    # When a reviewer asks for training
    response = as_admin.post(f"/api/v1/projects/{project.id}/train/", {}, format="json")
    assert response.status_code == 202, response.content
    job = response.json()["job"]
    assert job["kind"] == "train" and job["status"] in {"queued", "running"}

    # Then the job runs to success, its progress in [0, 1] and never going back
    body, progress = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail)
    assert body["status"] == "succeeded", body
    assert all(0.0 <= p <= 1.0 for p in progress), progress
    assert progress == sorted(progress), progress
    assert body["progress"] == 1.0
    assert body["result"]["model_version"] == 1 and body["result"]["promoted"] is True

    # and version 1 is the serving one
    models = as_admin.get(f"/api/v1/projects/{project.id}/models/").json()["results"]
    assert [(m["number"], m["status"], m["promoted"]) for m in models] == [(1, "ready", True)]
    assert models[0]["n_train"] > 0
    # with 50 labels, about 10 are held out: too few to measure, and the API says so instead of a number
    assert models[0]["macro_f1"] is None and models[0]["holdout"]["n"] < 30
    assert models[0]["holdout"]["reason"].startswith("too few held-out labels to measure")
    assert models[0]["promotion"]["decision"] == "first version"
    assert Project.objects.get(pk=project.id).serving_version.number == 1

    # and every unlabeled example carries a score of version 1 whose probabilities sum to 1
    rows = as_admin.get(f"/api/v1/projects/{project.id}/examples/",
                        {"labeled": "false", "page_size": 200}).json()["results"]
    assert {row["id"] for row in rows} == set(unlabeled_ids)
    for row in rows:
        score = row["latest_score"]
        assert score is not None and score["model_version"] == 1, row
        assert set(score["probs"]) == set(BBC_LABELS)
        assert math.isclose(sum(score["probs"].values()), 1.0, abs_tol=1e-4)
    detail = as_admin.get(f"/api/v1/examples/{unlabeled_ids[0]}/").json()
    assert detail["latest_score"]["model_version"] == 1

    # and the planted label errors are among the noise report's issues (most of them)
    report = as_admin.get(f"/api/v1/projects/{project.id}/noise-report/", {"page_size": 100}).json()
    assert report["model_version"] == 1
    issues = {issue["example_id"]: issue for issue in report["issues"]["results"]}
    found = flipped_ids & set(issues)
    assert len(found) >= 2, f"planted errors {flipped_ids}, issues {sorted(issues)}"
    for example_id in found:
        issue = issues[example_id]
        assert issue["given_label"] == FLIPPED[issue["external_id"]]
    qualities = [issue["label_quality"] for issue in report["issues"]["results"]]
    assert qualities == sorted(qualities)

    # and the queue holds uncertain, suspect and random items
    stats = as_admin.get(f"/api/v1/projects/{project.id}/queue/").json()
    assert stats["model_version"] == 1 and stats["pending"] > 0
    assert {"uncertain", "suspect", "random"} <= set(stats["by_reason"]), stats

    # and every answer about the trained version is what /api/schema/ declares, field for field
    for path in ["/api/v1/projects/{project_id}/models/", "/api/v1/projects/{project_id}/noise-report/",
                 "/api/v1/projects/{project_id}/queue/", "/api/v1/projects/{project_id}/jobs/",
                 "/api/v1/projects/{project_id}/examples/", "/api/v1/projects/{project_id}/health/",
                 "/api/v1/projects/{project_id}/noise-report/conflicts/"]:
        assert_answer_matches_schema(as_admin.get(path.format(project_id=project.id)), "GET", path)
    assert_answer_matches_schema(as_admin.get(f"/api/v1/jobs/{job['id']}/"), "GET", "/api/v1/jobs/{job_id}/")

    # When an annotator leases three items and answers them (retrain_after_labels is 3)
    answers_before = Annotation.objects.filter(example__project=project).count()
    leased = as_annotator.get(f"/api/v1/projects/{project.id}/queue/next/", {"n": 3})
    assert_answer_matches_schema(leased, "GET", "/api/v1/projects/{project_id}/queue/next/")
    leased = leased.json()
    assert len(leased) == 3
    assert all(item["reason"] in {"uncertain", "suspect", "random"} for item in leased)
    assert all(item["suggestion"] is not None for item in leased)
    for item in leased:
        answer = truth[item["example"]["external_id"]]
        response = as_annotator.post(f"/api/v1/queue/{item['id']}/submit/", {"label": answer}, format="json")
        assert response.status_code == 201, response.content
    assert Annotation.objects.filter(example__project=project).count() == answers_before + 3

    # Then a retrain starts on its own and produces version 2
    jobs = as_admin.get(f"/api/v1/projects/{project.id}/jobs/").json()["results"]
    retrain = next(j for j in jobs if j["kind"] == "train" and j["id"] != job["id"])
    body, progress = poll_job(as_admin, retrain["id"], timeout=TRAIN_TIMEOUT, diagnostics=worker.log_tail)
    assert body["status"] == "succeeded", body
    assert progress == sorted(progress)
    assert body["result"]["model_version"] == 2
    version = ModelVersion.objects.get(project=project, number=2)
    assert version.status == ModelVersion.Status.READY
    # trained on the new answers too (suspect items were labeled already; the others were not)
    newly_labeled = sum(1 for item in leased if item["reason"] != "suspect")
    assert version.snapshot["n_labeled"] == len(labeled) + newly_labeled
