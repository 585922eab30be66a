"""Automatic retraining (``retrain_after_labels``) counts every new label, whichever way it was given: an
answer, a review decision on the noise report or a conflict group (page or API), and an answer changed with
undo."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Max
from django.urls import reverse

from annotator.models import Annotation, Job, ModelVersion, Project
from annotator.services.projects import project_update_settings
from tests.annotator.views import factories


def _trained_up_to_now(project: Project, *, retrain_after_labels: int) -> None:
    """The newest version was trained on every annotation so far; retrain after this many new ones."""
    newest = Annotation.objects.filter(example__project=project).aggregate(m=Max("id"))["m"] or 0
    version = (ModelVersion.objects.filter(project=project).order_by("-number").first()
               or factories.model_version(project, 1))
    ModelVersion.objects.filter(pk=version.pk).update(snapshot={"max_annotation_id": newest})
    project_update_settings(project=project, settings={"retrain_after_labels": retrain_after_labels})


def _retrains(project: Project) -> list[Any]:
    return list(Job.objects.filter(project=project, kind=Job.Kind.TRAIN).values_list("params__reason", flat=True))


def test_auto_retrain_after_a_review_decision_on_the_noise_report_page(project, reviewer, noisy, page_client,
                                                                       htmx):
    _trained_up_to_now(project, retrain_after_labels=1)
    example = noisy["issues"][0]

    page_client(reviewer).post(reverse("review-decisions", args=[project.id]),
                               {"row_action": f"relabel:{example.id}", f"label_{example.id}": "neutral"}, headers=htmx)

    assert _retrains(project) == ["1 new labels"]


def test_auto_retrain_after_a_review_decision_through_the_api(project, reviewer, noisy, api_client):
    _trained_up_to_now(project, retrain_after_labels=1)
    example = noisy["issues"][0]

    response = api_client(reviewer).post(f"/api/v1/projects/{project.id}/noise-report/decisions/",
                                         [{"example_id": example.id, "action": "keep"}], format="json")

    assert response.status_code == 200, response.content
    assert _retrains(project) == ["1 new labels"]


def test_auto_retrain_after_settling_a_conflict_group_on_the_page_and_through_the_api(
        project, reviewer, noisy, page_client, api_client, htmx):
    first, second = noisy["examples"][:2]
    _trained_up_to_now(project, retrain_after_labels=2)

    page_client(reviewer).post(reverse("review-conflicts-settle", args=[project.id]),
                               {"example_ids": [first.id, second.id], "label": "neutral"}, headers=htmx)

    assert _retrains(project) == ["2 new labels"]
    Job.objects.filter(project=project).update(status=Job.Status.SUCCEEDED)
    _trained_up_to_now(project, retrain_after_labels=2)
    response = api_client(reviewer).post(f"/api/v1/projects/{project.id}/noise-report/conflicts/settle/",
                                         {"example_ids": [first.id, second.id], "label": "positive"}, format="json")
    assert response.status_code == 200, response.content
    assert _retrains(project) == ["2 new labels", "2 new labels"]


def test_auto_retrain_after_undo(project, annotator, queued, page_client, htmx):
    # Given automatic retraining after two new labels, and one answer given since the last version
    _trained_up_to_now(project, retrain_after_labels=2)
    client = page_client(annotator)
    html = client.get(reverse("annotate", args=[project.id])).content.decode()
    first = int(re.findall(r'<article class="item" id="item-(\d+)"', html)[0])
    client.post(reverse("annotate-submit", args=[project.id, first]), {"label": "negative"}, headers=htmx)
    assert _retrains(project) == []
    answer = Annotation.objects.get(queue_item_id=first)

    # When the annotator changes that answer with undo (the second new label)
    client.post(reverse("annotate-correct", args=[project.id, answer.id]), {"label": "positive"}, headers=htmx)

    # Then the retrain starts
    assert _retrains(project) == ["2 new labels"]
