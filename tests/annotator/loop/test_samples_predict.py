"""Predictions and production samples before and after the first model version (real worker trains it)."""

from __future__ import annotations

import math

import pytest

from annotator.models import Example, Source
from tests.annotator.assertions import error_list
from tests.annotator.loop.corpus import articles, labeled_rows
from tests.annotator.loop.steps import import_rows, train
from tests.annotator.openapi import assert_answer_matches_schema

CLASSES = ["business", "politics", "sports"]


def check_prediction(prediction: dict) -> None:
    probs = prediction["probs"]
    assert set(probs) == set(CLASSES)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
    assert prediction["label"] == max(probs, key=probs.get)
    assert math.isclose(prediction["confidence"], max(probs.values()), abs_tol=1e-4)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_predict_and_samples_answer_with_the_promoted_version_once_there_is_one(worker, loop_project, as_admin):
    project = loop_project(labels=CLASSES)
    import_rows(as_admin, project.id, labeled_rows(CLASSES, 0, 6))
    predict_url = f"/api/v1/projects/{project.id}/predict/"
    samples_url = f"/api/v1/projects/{project.id}/samples/"

    # Given no version yet: predict is refused with 409, samples are stored without predictions
    early = as_admin.post(predict_url, {"texts": ["Shares fell sharply"]}, format="json")
    assert early.status_code == 409
    assert "train" in error_list(early)[0]["message"]
    pushed = as_admin.post(samples_url, [{"text": articles("sports", 50, 51)[0], "external_id": "p-early"}],
                           format="json")
    assert pushed.status_code == 201, pushed.content
    assert pushed.json()["predictions"] is None
    assert Example.objects.get(pk=pushed.json()["ids"][0]).source == Source.PRODUCTION

    # When version 1 is trained and promoted
    train(as_admin, project.id, diagnostics=worker.log_tail)

    # Then predict answers with it, one prediction per text, in order
    texts = [articles("business", 50, 51)[0], articles("sports", 51, 52)[0]]
    response = as_admin.post(predict_url, {"texts": texts}, format="json")
    assert response.status_code == 200, response.content
    assert_answer_matches_schema(response, "POST", "/api/v1/projects/{project_id}/predict/")
    body = response.json()
    assert body["model_version"] == 1
    assert len(body["predictions"]) == 2
    for prediction in body["predictions"]:
        check_prediction(prediction)

    # and pushed samples come back with predictions and are stored, scored by version 1
    rows = [{"text": text, "external_id": f"p-{i}", "observed_at": "2026-01-05T10:00:00Z"}
            for i, text in enumerate(articles("politics", 50, 53))]
    pushed = as_admin.post(samples_url, rows, format="json")
    assert pushed.status_code == 201, pushed.content
    assert_answer_matches_schema(pushed, "POST", "/api/v1/projects/{project_id}/samples/")
    body = pushed.json()
    assert body["model_version"] == 1 and len(body["ids"]) == 3 and len(body["predictions"]) == 3
    for prediction in body["predictions"]:
        check_prediction(prediction)
    detail = as_admin.get(f"/api/v1/examples/{body['ids'][0]}/").json()
    assert detail["source"] == "production"
    assert detail["latest_score"]["model_version"] == 1
    assert detail["latest_score"]["probs"] == pytest.approx(body["predictions"][0]["probs"], abs=1e-4)

    # and pushing the same samples again stores nothing twice
    again = as_admin.post(samples_url, rows, format="json")
    assert again.status_code == 201
    assert again.json()["ids"] == body["ids"] and again.json()["created"] == 0
