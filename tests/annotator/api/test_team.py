"""GET /api/v1/projects/{id}/team/ on three annotators with known agreements (tests/annotator/team_rows.py)."""

from __future__ import annotations

import pytest

from tests.annotator import team_rows


@pytest.fixture
def team(project, admin, reviewer, make_user):
    return team_rows.build_team(project, admin, reviewer, make_user)


def test_the_team_answers_kappas_and_each_annotator(project, team, as_reviewer):
    response = as_reviewer.get(f"/api/v1/projects/{project.id}/team/")

    assert response.status_code == 200
    body = response.json()
    assert body["fleiss_kappa"] == pytest.approx(team_rows.FLEISS)
    assert {(p["a"], p["b"]): p["kappa"] for p in body["pairs"]} == pytest.approx(team_rows.KAPPA)
    people = {row["username"]: row for row in body["annotators"]}
    assert set(people) == {"alice", "rita", "anna", "ben", "cara"}
    assert people["anna"]["median_seconds"] == pytest.approx(20.0)
    assert people["anna"]["changed_by_review"] == 1 and people["anna"]["labels"] == 7
    assert people["cara"]["by_kind"] == {"queue": 1, "manual": 6, "review": 0, "import": 0}
    assert people["ben"]["agreement_with_consensus"] == pytest.approx(5 / 6)
    assert body["answer_kinds"] == ["queue", "manual", "review", "import"]
    assert body["break_seconds"] == 600


def test_an_annotator_is_refused_the_team(project, team, as_annotator):
    response = as_annotator.get(f"/api/v1/projects/{project.id}/team/")

    assert response.status_code == 403
    assert "reviewer" in response.json()["errors"][0]["message"]


def test_a_non_member_gets_404(project, as_outsider):
    assert as_outsider.get(f"/api/v1/projects/{project.id}/team/").status_code == 404


def test_an_empty_project_has_no_kappa(project, as_admin):
    body = as_admin.get(f"/api/v1/projects/{project.id}/team/").json()

    assert body["fleiss_kappa"] is None and body["pairs"] == [] and body["overlap_items"] == 0
    assert {row["username"] for row in body["annotators"]} == {"alice", "rita", "anna"}
