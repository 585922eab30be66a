"""The team page in a real browser: a reviewer reaches it from the project navigation and reads each
annotator's numbers and the pairwise kappa heatmap; an annotator has no link and gets 404. Saves
docs/screenshots/team.png (with UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Role
from annotator.services.projects import member_set, project_create
from tests.annotator import team_rows

pytestmark = pytest.mark.browser


@pytest.fixture
def crew(make_user: Any) -> dict[str, Any]:
    alice, rita, anna = make_user("alice"), make_user("rita"), make_user("anna")
    project = project_create(user=alice, name="Product reviews", task="single_label",
                             labels=["positive", "negative", "neutral"], settings=None)
    member_set(project=project, username="rita", role=Role.REVIEWER)
    member_set(project=project, username="anna", role=Role.ANNOTATOR)
    team_rows.build_team(project, alice, rita, make_user)
    # As the last training on overlapping items would have stored them.
    for name, quality in {"anna": 0.94, "ben": 0.86, "cara": 0.71}.items():
        Membership.objects.filter(project=project, user__username=name).update(
            annotator_quality=quality, agreement_with_consensus=team_rows.AGREEMENT[name])
    return {"project": project, "reviewer": rita, "annotator": anna}


def test_a_reviewer_opens_the_team_page_from_the_navigation(page, login, screenshot, crew):
    project = crew["project"]
    login(crew["reviewer"])
    page.goto(f"/projects/{project.id}/")

    page.get_by_role("navigation", name="Project").get_by_role("link", name="Team").click()

    page.wait_for_url(f"**/projects/{project.id}/team/")
    expect(page.get_by_role("heading", name="Team", exact=True)).to_be_visible()
    expect(page.get_by_test_id("fleiss-kappa")).to_have_text("0.33")
    heatmap = page.get_by_role("img", name="Cohen's kappa for each pair of annotators")
    expect(heatmap).to_be_visible()
    expect(heatmap.locator("text", has_text="0.67")).to_have_count(2)  # anna-ben, both halves of the matrix
    rows = page.locator("#team-table tbody tr")
    expect(rows).to_have_count(5)  # alice, rita, anna, ben, cara
    anna = rows.filter(has=page.get_by_role("cell", name="anna", exact=True))
    expect(anna).to_contain_text("100%")  # agrees with the consensus on every overlapping item
    expect(anna).to_contain_text("14% (1 of 7)")  # one label of seven changed by a review
    screenshot("team")


def test_an_annotator_has_no_team_link_and_gets_404(page, login, crew):
    project = crew["project"]
    login(crew["annotator"])
    page.goto(f"/projects/{project.id}/")

    expect(page.get_by_role("navigation", name="Project").get_by_role("link", name="Team")).to_have_count(0)
    response = page.goto(f"/projects/{project.id}/team/")
    assert response is not None and response.status == 404
