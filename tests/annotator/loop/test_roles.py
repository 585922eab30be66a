"""The loop's data-lead endpoints are closed to annotators (403) and invisible to outsiders (404)."""

from __future__ import annotations

import pytest

from annotator.models import Job, ModelVersion
from tests.annotator.assertions import counts, error_list


@pytest.fixture
def version(project) -> ModelVersion:
    return ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)


@pytest.fixture
def job(project) -> Job:
    return Job.objects.create(project=project, kind=Job.Kind.TRAIN)


def requests(project, version, job, example_id: int) -> list[tuple[str, str, object]]:
    p = project.id
    return [
        ("get", f"/api/v1/projects/{p}/noise-report/", None),
        ("post", f"/api/v1/projects/{p}/noise-report/decisions/", [{"example_id": example_id, "action": "keep"}]),
        ("get", f"/api/v1/projects/{p}/models/", None),
        ("post", f"/api/v1/models/{version.id}/promote/", None),
        ("get", f"/api/v1/projects/{p}/drift/", None),
        ("post", f"/api/v1/projects/{p}/train/", {}),
        ("post", f"/api/v1/projects/{p}/samples/", [{"text": "a production sample"}]),
        ("post", f"/api/v1/jobs/{job.id}/cancel/", None),
    ]


@pytest.fixture
def example(project, admin, make_examples):
    return make_examples(project, admin, [{"external_id": "e", "text": "Fine", "label": "positive"}])[0]


@pytest.mark.django_db
def test_an_annotator_is_refused_the_data_lead_endpoints(project, version, job, example, as_annotator):
    before = counts(), Job.objects.count()
    for method, url, body in requests(project, version, job, example.id):
        response = getattr(as_annotator, method)(url, body, format="json")
        assert response.status_code == 403, (method, url, response.status_code)
        assert "reviewer" in error_list(response)[0]["message"]
    # nothing was written, promoted or cancelled
    assert (counts(), Job.objects.count()) == before
    project.refresh_from_db()
    assert project.serving_version is None
    assert Job.objects.get(pk=job.id).status == Job.Status.QUEUED


@pytest.mark.django_db
def test_an_outsider_cannot_see_any_of_it(project, version, job, example, as_outsider):
    for method, url, body in requests(project, version, job, example.id):
        response = getattr(as_outsider, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    assert as_outsider.get(f"/api/v1/jobs/{job.id}/").status_code == 404
    assert as_outsider.post(f"/api/v1/projects/{project.id}/predict/", {"texts": ["x"]},
                            format="json").status_code == 404


@pytest.mark.django_db
def test_an_annotator_may_follow_a_job_but_not_start_or_stop_one(project, job, as_annotator):
    response = as_annotator.get(f"/api/v1/jobs/{job.id}/")

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
