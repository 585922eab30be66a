"""The Review page's Conflicts and Outliers & class health tabs."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotator.models import Annotation, Example
from tests.annotator.health_rows import health_examples, health_version


@pytest.fixture
def healthy(project, admin):
    examples = health_examples(project, admin)
    return {"examples": examples, "version": health_version(project, examples)}


def _group_ids(html: str) -> list[str]:
    return re.findall(r'<section class="card conflict" id="group-(\d+)"', html)


def test_the_review_tabs_link_both_new_tabs(project, reviewer, healthy, page_client):
    html = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    assert reverse("review-conflicts", args=[project.id]) in html
    assert reverse("review-health", args=[project.id]) in html
    assert "Outliers &amp; class health" in html


def test_conflicts_show_each_group_with_its_members_and_one_settle_form(project, reviewer, healthy, page_client):
    html = page_client(reviewer).get(reverse("review-conflicts", args=[project.id])).content.decode()

    assert _group_ids(html) == ["0"]
    for example in healthy["examples"][:3]:
        assert f'id="member-{example.id}"' in html
        assert f'name="example_ids" value="{example.id}"' in html
    assert html.count('action="' + reverse("review-conflicts-settle", args=[project.id])) == 1
    assert '<option value="negative" selected>' in html  # the majority is preselected
    assert "identical texts" in html
    # Not mixed into the label-issues list of the noise report.
    assert 'id="issue-' not in html


def test_settling_a_group_from_the_page(project, reviewer, healthy, page_client, htmx):
    ids = [e.id for e in healthy["examples"][:3]]

    response = page_client(reviewer).post(reverse("review-conflicts-settle", args=[project.id]),
                                          {"example_ids": ids, "label": "negative"}, headers=htmx)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="conflicts">')
    assert "Settled 3 examples to negative (1 changed)." in html
    assert _group_ids(html) == []
    assert all(e.settled for e in Example.objects.filter(id__in=ids))
    assert set(Annotation.objects.filter(example_id__in=ids, kind="review").values_list("user", flat=True)) == {
        reviewer.id}


def test_a_bad_settlement_from_the_page_writes_nothing(project, reviewer, healthy, page_client, htmx):
    ids = [e.id for e in healthy["examples"][:3]]

    response = page_client(reviewer).post(reverse("review-conflicts-settle", args=[project.id]),
                                          {"example_ids": ids, "label": "no-such-label"}, headers=htmx)

    assert response.status_code == 422
    assert "Nothing was saved" in response.content.decode()
    assert not Annotation.objects.filter(example_id__in=ids, kind="review").exists()


def test_without_htmx_settling_redirects_back(project, reviewer, healthy, page_client):
    ids = [e.id for e in healthy["examples"][:3]]

    response = page_client(reviewer).post(reverse("review-conflicts-settle", args=[project.id]),
                                          {"example_ids": ids, "label": "positive"})

    assert response.status_code == 302
    assert response["Location"] == reverse("review-conflicts", args=[project.id])


def test_outliers_and_class_health(project, reviewer, healthy, page_client):
    html = page_client(reviewer).get(reverse("review-health", args=[project.id])).content.decode()

    rows = re.findall(r'<tr id="outlier-(\d+)"', html)
    assert rows[0] == str(healthy["examples"][-1].id)  # the far-away text first
    assert "Share of labeled examples per class" in html  # the SVG chart
    assert "too small to learn" in html
    assert "neutral</span> only 1 labeled example: fewer than 10" in html


def test_text_is_escaped(project, reviewer, healthy, page_client):
    conflicts = page_client(reviewer).get(reverse("review-conflicts", args=[project.id])).content.decode()
    outliers = page_client(reviewer).get(reverse("review-health", args=[project.id])).content.decode()

    # "<b>Great</b> value & quick support" is one of the examples; it must never come back as markup.
    assert "<b>Great</b>" not in outliers and "<b>Great</b>" not in conflicts
    assert "&lt;b&gt;Great&lt;/b&gt; value &amp; quick support" in outliers


def test_empty_tabs_before_any_version(project, reviewer, page_client):
    client = page_client(reviewer)

    assert "No conflict report yet" in client.get(reverse("review-conflicts", args=[project.id])).content.decode()
    assert "No data health yet" in client.get(reverse("review-health", args=[project.id])).content.decode()


@pytest.mark.parametrize(("who", "status"), [("admin", 200), ("reviewer", 200), ("annotator", 404), ("outsider", 404)])
def test_roles(project, healthy, page_client, admin, reviewer, annotator, outsider, who, status):
    client = page_client({"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider}[who])
    ids = [e.id for e in healthy["examples"][:3]]

    assert client.get(reverse("review-conflicts", args=[project.id])).status_code == status
    assert client.get(reverse("review-health", args=[project.id])).status_code == status
    settle = client.post(reverse("review-conflicts-settle", args=[project.id]), {"example_ids": ids, "label": "negative"})
    assert settle.status_code == (302 if status == 200 else 404)
    if status != 200:
        assert not Annotation.objects.filter(example_id__in=ids, kind="review").exists()


def test_anonymous_visitors_are_sent_to_log_in(project, page_client):
    response = page_client().get(reverse("review-conflicts", args=[project.id]))

    assert response.status_code == 302 and "/login/" in response["Location"]
