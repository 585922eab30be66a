"""The review pages: the noise report with its decisions, and annotator agreement."""

from __future__ import annotations

import re

from django.urls import reverse

from annotator.models import Annotation, QueueItem
from annotator.services.annotations import annotation_create
from tests.annotator.views import factories


def _issue_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="issue-(\d+)"', html)]


def test_issues_are_listed_worst_first_with_who_labeled_them(project, reviewer, annotator, noisy, page_client):
    html = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    assert _issue_ids(html) == [e.id for e in noisy["issues"]]
    assert "12.0%" in html  # the estimated noise rate
    assert "anna, alice" in html  # the annotator's answer is newer than the import
    assert "Estimated noise rate per class" in html


def test_the_report_filters_by_given_label(project, reviewer, noisy, page_client, htmx):
    response = page_client(reviewer).get(reverse("review", args=[project.id]) + "?label=negative", headers=htmx)

    html = response.content.decode()
    assert _issue_ids(html) == [noisy["issues"][1].id]
    assert html.lstrip().startswith('<div id="issues">')


def test_a_reviewer_relabels_one_suspect(project, reviewer, noisy, page_client, htmx):
    example = noisy["issues"][0]

    response = page_client(reviewer).post(
        reverse("review-decisions", args=[project.id]),
        {"row_action": f"relabel:{example.id}", f"label_{example.id}": "neutral"}, headers=htmx)

    decision = Annotation.objects.filter(example=example).latest("id")
    assert (decision.kind, decision.labels, decision.user) == ("review", ["neutral"], reviewer)
    html = response.content.decode()
    assert example.id not in _issue_ids(html)  # a decided example leaves the report
    assert "1 relabeled" in html


def test_bulk_relabel_to_the_suggestions(project, reviewer, noisy, page_client, htmx):
    first, second = noisy["issues"][:2]
    form = {"bulk_action": "relabel", "bulk_label": "*suggested*", "selected": [first.id, second.id],
            f"suggested_{first.id}": "negative", f"suggested_{second.id}": "positive"}

    page_client(reviewer).post(reverse("review-decisions", args=[project.id]), form, headers=htmx)

    assert Annotation.objects.filter(example=first, kind="review").get().labels == ["negative"]
    assert Annotation.objects.filter(example=second, kind="review").get().labels == ["positive"]


def test_bulk_keep_and_send_to_queue(project, reviewer, noisy, page_client, htmx):
    first, second, third = noisy["issues"]
    client = page_client(reviewer)

    client.post(reverse("review-decisions", args=[project.id]),
                {"bulk_action": "keep", "bulk_label": "*suggested*", "selected": [first.id]}, headers=htmx)
    client.post(reverse("review-decisions", args=[project.id]),
                {"row_action": f"send_to_queue:{second.id}"}, headers=htmx)

    assert Annotation.objects.get(example=first, kind="review").labels == ["positive"]
    assert QueueItem.objects.get(example=second).reason == "suspect"
    assert not Annotation.objects.filter(example=third, kind="review").exists()


def test_a_bad_decision_writes_nothing(project, reviewer, noisy, page_client, htmx):
    first = noisy["issues"][0]
    form = {"bulk_action": "relabel", "bulk_label": "no-such-label", "selected": [first.id, 999999]}

    response = page_client(reviewer).post(reverse("review-decisions", args=[project.id]), form, headers=htmx)

    assert response.status_code == 422
    assert "Nothing was saved" in response.content.decode()
    assert not Annotation.objects.filter(kind="review").exists()


def test_a_bulk_action_with_no_row_checked_is_explained(project, reviewer, noisy, page_client, htmx):
    response = page_client(reviewer).post(reverse("review-decisions", args=[project.id]),
                                          {"bulk_action": "keep"}, headers=htmx)

    assert response.status_code == 422
    assert "check at least one row" in response.content.decode()


def test_issue_text_is_escaped(project, admin, reviewer, page_client):
    noisy = factories.noisy_version(project, admin)
    example = noisy["issues"][0]
    example.text = '<img src=x onerror="alert(1)">'
    example.save(update_fields=["text"])

    html = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_without_a_report_the_page_explains(project, reviewer, page_client):
    html = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    assert "No noise report yet" in html


def test_agreement_shows_answers_consensus_and_rates(project, admin, reviewer, annotator, page_client):
    examples = factories.import_examples(project, admin, ["shared one", "shared two"])
    for example, (a, b) in zip(examples, [("positive", "positive"), ("positive", "negative")], strict=True):
        annotation_create(example=example, user=annotator, labels=[a])
        annotation_create(example=example, user=reviewer, labels=[b])

    html = page_client(reviewer).get(reverse("agreement", args=[project.id])).content.decode()

    assert "shared one" in html and "shared two" in html
    assert "50.0%" in html  # one of the two answer pairs agrees
    assert 'class="answer differs"' in html and 'class="answer agrees"' in html
    assert "<td>anna</td>" in html and "<td>rita</td>" in html


def test_settled_flags_leave_the_issues_and_show_who_confirmed_them(project, reviewer, noisy, page_client, htmx):
    # Given a reviewer kept the worst flagged label (a review decision settles it)
    kept = noisy["issues"][0]
    page_client(reviewer).post(reverse("review-decisions", args=[project.id]),
                               {"row_action": f"keep:{kept.id}"}, headers=htmx)

    html = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    # Then it is no longer an open issue, and the settled section lists it as confirmed
    assert kept.id not in _issue_ids(html)
    assert f'<tr id="settled-{kept.id}">' in html
    assert "confirmed by 3 people" in html  # the importer, the labeler and the reviewer
    assert "Detector, as people measured it" in html
