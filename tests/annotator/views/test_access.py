"""Every project page checks membership and role: non-members and too-low roles get a 404, never a 403."""

from __future__ import annotations

import pytest
from django.urls import reverse

PAGES = ["project-overview", "annotate", "review", "agreement", "models", "drift", "import", "export"]
REVIEWER_PAGES = ["review", "agreement", "models", "drift", "import", "export"]


@pytest.mark.parametrize("page", PAGES)
def test_a_non_member_gets_404_on_every_project_page(page, project, outsider, page_client):
    response = page_client(outsider).get(reverse(page, args=[project.id]))

    assert response.status_code == 404


@pytest.mark.parametrize("page", REVIEWER_PAGES)
def test_an_annotator_gets_404_on_reviewer_pages(page, project, annotator, page_client):
    response = page_client(annotator).get(reverse(page, args=[project.id]))

    assert response.status_code == 404


@pytest.mark.parametrize("page", ["project-overview", "annotate"])
def test_an_annotator_opens_the_overview_and_annotate_pages(page, project, annotator, page_client):
    response = page_client(annotator).get(reverse(page, args=[project.id]))

    assert response.status_code == 200


def test_the_annotators_navigation_shows_only_their_pages(project, annotator, page_client):
    html = page_client(annotator).get(reverse("project-overview", args=[project.id])).content.decode()

    assert reverse("annotate", args=[project.id]) in html
    for page in REVIEWER_PAGES:
        assert reverse(page, args=[project.id]) not in html


@pytest.mark.parametrize("page", PAGES)
def test_a_reviewer_opens_every_page(page, project, reviewer, page_client):
    response = page_client(reviewer).get(reverse(page, args=[project.id]))

    assert response.status_code == 200


def test_an_anonymous_visitor_is_sent_to_the_login_page(project, page_client):
    response = page_client().get(reverse("project-overview", args=[project.id]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "kwargs"), [
    ("train", {}), ("review-decisions", {}), ("project-settings", {}),
])
def test_an_annotator_cannot_post_reviewer_actions(name, kwargs, project, annotator, page_client):
    response = page_client(annotator).post(reverse(name, args=[project.id]), {"mode": "auto"})

    assert response.status_code == 404


def test_the_project_list_links_each_project(project, annotator, page_client):
    html = page_client(annotator).get(reverse("project-list")).content.decode()

    assert f'href="{reverse("project-overview", args=[project.id])}"' in html


def test_the_body_carries_the_csrf_header_for_htmx(project, reviewer, page_client):
    html = page_client(reviewer).get(reverse("project-overview", args=[project.id])).content.decode()

    assert "<body hx-headers='{\"X-CSRFToken\": \"" in html
    assert "django_htmx/htmx-2.min.js" in html
