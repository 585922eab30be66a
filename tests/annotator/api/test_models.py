"""GET models/ gives each version its holdout measurement (or why there is none) and its promotion decision with
the evidence; the ``promotion`` setting is validated like the others; POST promote rolls back."""

from __future__ import annotations

from django.utils import timezone

from annotator.models import ModelVersion
from annotator.services.models import model_promote
from tests.annotator.views import factories


def test_each_version_has_its_holdout_and_promotion(project, as_reviewer):
    factories.model_version(project, 1, f1=0.7, serving=True, comparison={
        "decision": "first version", "policy": "auto", "evidence": {"reason": "no version served yet"}})
    too_few = "too few held-out labels to measure: 12 held out, at least 30 needed"
    factories.model_version(project, 2, metrics={"macro_f1": None, "holdout": {"n": 12, "reason": too_few}},
                            comparison={"decision": "promoted", "policy": "auto", "evidence": {
                                "against_version": 1, "reason": f"no comparison: {too_few}"}})

    response = as_reviewer.get(f"/api/v1/projects/{project.id}/models/")

    assert response.status_code == 200
    by_number = {v["number"]: v for v in response.json()["results"]}
    first, second = by_number[1], by_number[2]
    assert first["holdout"]["n"] == 40 and first["holdout"]["macro_f1"] == 0.7
    assert first["holdout"]["macro_f1_ci"] == [0.7 - 0.06, 0.7 + 0.05]
    assert first["holdout"]["sources"] == {"import": 32, "random": 8}
    assert first["macro_f1_ci"] == first["holdout"]["macro_f1_ci"]
    assert first["promotion"]["decision"] == "first version"
    assert second["macro_f1"] is None
    assert second["holdout"] == {"n": 12, "reason": too_few}
    assert second["promotion"]["decision"] == "promoted"
    assert second["promotion"]["evidence"]["reason"].startswith("no comparison: too few held-out labels")


def test_a_version_from_before_the_holdout_says_so(project, as_reviewer):
    ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY,
                                metrics={"macro_f1": 0.9}, finished_at=timezone.now(),
                                comparison={"against_version": 0, "on": "validation", "n": 10,
                                            "candidate_macro_f1": 0.9, "serving_macro_f1": 0.8, "promoted": True})

    (row,) = as_reviewer.get(f"/api/v1/projects/{project.id}/models/").json()["results"]

    assert row["holdout"]["n"] is None and "before the stable holdout" in row["holdout"]["reason"]
    assert row["promotion"]["decision"] == "promoted"
    assert row["promotion"]["evidence"]["on"] == "validation"


def test_promoting_an_earlier_version_rolls_back_and_is_recorded(project, as_reviewer, reviewer):
    first = factories.model_version(project, 1)
    model_promote(version=factories.model_version(project, 2), reason="first version")

    response = as_reviewer.post(f"/api/v1/models/{first.id}/promote/")

    assert response.status_code == 200
    body = response.json()
    assert body["promoted"] is True and body["number"] == 1
    assert body["promotion"]["history"][-1]["reason"] == f"promoted by {reviewer.username}"
    assert body["promotion"]["history"][-1]["rollback"] is True
    assert body["promotion"]["history"][-1]["replaced_version"] == 2


def test_the_promotion_setting_is_read_written_and_validated(project, as_admin):
    url = f"/api/v1/projects/{project.id}/"
    assert as_admin.get(url).json()["settings"]["promotion"] == "auto"

    bad = as_admin.patch(url, {"settings": {"promotion": "sometimes"}}, format="json")
    good = as_admin.patch(url, {"settings": {"promotion": "manual"}}, format="json")

    assert bad.status_code == 400
    assert bad.json()["errors"] == [{"field": "settings.promotion", "message": "must be one of auto, manual"}]
    assert good.status_code == 200 and good.json()["settings"]["promotion"] == "manual"


def test_the_schema_documents_holdout_and_promotion(api_client):
    schema = api_client().get("/api/schema/?format=json").json()

    version = schema["components"]["schemas"]["ModelVersionOut"]["properties"]
    assert {"holdout", "promotion", "macro_f1_ci"} <= set(version)
    holdout = schema["components"]["schemas"]["HoldoutOut"]["properties"]
    assert {"n", "reason", "macro_f1", "macro_f1_ci", "sources"} <= set(holdout)
