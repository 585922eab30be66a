"""The models API gives each version its stopping signal (``stability``)."""

from __future__ import annotations

from tests.annotator.services.stability_rows import STOPPED, stabilized


def test_the_models_api_gives_each_version_its_stability(project, admin, as_reviewer):
    stabilized(project, admin)

    results = as_reviewer.get(f"/api/v1/projects/{project.id}/models/").json()["results"]

    by_number = {v["number"]: v["stability"] for v in results}
    assert by_number[4]["stopped"] is True
    assert by_number[4]["kappa"] == 1.0
    assert by_number[4]["against_version"] == 3
    assert by_number[4]["message"] == STOPPED
    assert by_number[1]["kappa"] is None
    assert by_number[1]["reason"] == "no earlier ready version to compare with"
