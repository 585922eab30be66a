"""The team page and its selector, on three annotators with known agreements (tests/annotator/team_rows.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from annotator.models import Membership, Role
from annotator.selectors.team import team_report
from annotator.services.annotations import annotation_create
from annotator.services.projects import member_set
from tests.annotator import team_rows


@pytest.fixture
def team(project, admin, reviewer, make_user):
    return team_rows.build_team(project, admin, reviewer, make_user)


def _row(report, username):
    return next(row for row in report["annotators"] if row["username"] == username)


def test_pairwise_and_team_kappas_match_the_hand_computation(project, team):
    report = team_report(project)

    kappas = {(pair["a"], pair["b"]): pair["kappa"] for pair in report["pairs"]}
    assert kappas == pytest.approx(team_rows.KAPPA)
    assert all(pair["n"] == 6 for pair in report["pairs"])
    assert report["fleiss_kappa"] == pytest.approx(team_rows.FLEISS)
    assert report["overlap_items"] == 6


def test_agreement_with_the_consensus_per_annotator(project, team):
    report = team_report(project)

    for name, agreement in team_rows.AGREEMENT.items():
        row = _row(report, name)
        assert row["agreement_with_consensus"] == pytest.approx(agreement), name
        assert row["overlap_items"] == 6
    assert _row(report, "rita")["agreement_with_consensus"] is None


def test_answers_are_counted_by_kind(project, team):
    report = team_report(project)

    assert _row(report, "anna")["by_kind"] == {"queue": 0, "manual": 7, "review": 0, "import": 0}
    assert _row(report, "cara")["by_kind"] == {"queue": 1, "manual": 6, "review": 0, "import": 0}
    assert _row(report, "rita")["by_kind"]["review"] == 2
    assert _row(report, "alice")["answers"] == 0  # imported without labels: a member with no answer yet


def test_labels_changed_by_a_later_review(project, team):
    report = team_report(project)

    anna, ben, cara = (_row(report, name) for name in ("anna", "ben", "cara"))
    assert (anna["reviewed"], anna["changed_by_review"], anna["labels"]) == (1, 1, 7)
    assert anna["changed_share"] == pytest.approx(1 / 7)
    assert (ben["reviewed"], ben["changed_by_review"]) == (1, 0)  # the review kept ben's label
    assert (cara["reviewed"], cara["changed_by_review"]) == (0, 0)


def test_a_review_before_the_answer_changes_nothing(project, team, reviewer):
    """Only a later correction counts: anna answers item 7 again after the review, agreeing with it."""
    from annotator.models import Example

    example = Example.objects.get(pk=team["examples"][7])
    annotation_create(example=example, user=team["people"]["anna"], labels=["negative"])

    anna = _row(team_report(project), "anna")
    assert (anna["reviewed"], anna["changed_by_review"], anna["labels"]) == (1, 1, 8)


def test_median_seconds_leave_breaks_out(project, team):
    report = team_report(project)

    for name, seconds in team_rows.MEDIAN_SECONDS.items():
        assert _row(report, name)["median_seconds"] == pytest.approx(seconds), name
    assert _row(report, "anna")["timed_answers"] == 5  # one gap of the six is a break
    assert _row(report, "cara")["timed_answers"] == 6
    assert _row(report, "rita")["median_seconds"] is None  # review decisions are not timed


def test_crowdlab_quality_shows_what_the_last_training_stored(project, team):
    Membership.objects.filter(project=project, user__username="ben").update(annotator_quality=0.81,
                                                                          agreement_with_consensus=0.9)
    report = team_report(project)

    assert _row(report, "ben")["crowdlab_quality"] == pytest.approx(0.81)
    assert _row(report, "anna")["crowdlab_quality"] is None


def test_the_report_takes_a_few_queries(project, team, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        team_report(project)


def test_the_page_shows_each_annotator_and_the_kappa_heatmap(project, team, reviewer, page_client):
    response = page_client(reviewer).get(reverse("team", args=[project.id]))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="fleiss-kappa">0.33<' in html  # 13/40, rounded half up
    assert "Cohen&#x27;s kappa for each pair of annotators" in html or "Cohen's kappa for each pair" in html
    assert "<svg" in html and "kappa 0.67 over 6 shared item(s)" in html
    assert "gaps over 10 minutes count as breaks" in html
    assert ">83%<" in html  # ben agrees with the consensus on 5 of 6
    assert "14% <span class=\"muted\">(1 of 7)</span>" in html  # anna: one label of seven changed by review
    assert f'href="{reverse("team", args=[project.id])}"' in html  # in the project navigation


def test_the_navigation_links_the_team_page_for_reviewers_only(project, annotator, reviewer, page_client):
    url = reverse("team", args=[project.id])
    overview = reverse("project-overview", args=[project.id])

    assert f'href="{url}"' in page_client(reviewer).get(overview).content.decode()
    assert f'href="{url}"' not in page_client(annotator).get(overview).content.decode()
    assert page_client(annotator).get(url).status_code == 404


def test_usernames_are_escaped_in_the_table_and_the_chart(project, team, reviewer, make_user, page_client):
    hostile = make_user("<img src=x onerror=alert(1)>")
    member_set(project=project, username=hostile.username, role=Role.ANNOTATOR)
    from annotator.models import Example

    for i in (1, 2):
        annotation_create(example=Example.objects.get(pk=team["examples"][i]), user=hostile, labels=["positive"])

    html = page_client(reviewer).get(reverse("team", args=[project.id])).content.decode()

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3  # the table row and the heatmap's two axes


def test_an_empty_project_says_so(project, reviewer, page_client):
    html = page_client(reviewer).get(reverse("team", args=[project.id])).content.decode()

    assert "No two annotators answered the same item yet" in html
    assert "No Fleiss&#x27; kappa yet" in html or "No Fleiss' kappa yet" in html


def test_the_report_on_the_embedded_sqlite_default(tmp_path):
    """SQLite has no percentile_cont: the median time per item is taken from the gaps in Python there."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DATA_DIR=str(tmp_path), ARTIFACT_DIR=str(tmp_path / "artifacts"), SECRET_KEY="test-only-secret")
    done = subprocess.run([sys.executable, "-m", "tests.annotator.team_sqlite"], cwd=Path(__file__).resolve().parents[3],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])

    assert outcome["fleiss_kappa"] == pytest.approx(team_rows.FLEISS)
    assert {name: outcome["median_seconds"][name] for name in team_rows.MEDIAN_SECONDS} == pytest.approx(
        team_rows.MEDIAN_SECONDS)
    assert outcome["median_seconds"]["rita"] is None
    assert outcome["changed"]["anna"] == 1 and outcome["changed"]["ben"] == 0
