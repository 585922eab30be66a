"""The loop converges: labels people re-checked stay settled across retrains, and the next queue spends
the budget on first labels instead of asking again."""

from __future__ import annotations

import pytest

from annotator.models import Example, ModelVersion, Project, QueueItem
from tests.annotator.loop.corpus import labeled_rows, unlabeled_rows
from tests.annotator.loop.steps import import_rows, train
from training.data import BBC_LABELS

# Deliberately wrong labels, so the detector has something to flag.
FLIPPED = {"l-business-0": "sports", "l-sports-1": "tech", "l-tech-2": "politics", "l-politics-3": "business"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_answered_suspects_stay_settled_and_the_next_queue_honours_the_mix(worker, loop_project, as_admin,
                                                                          as_annotator):
    # Given 8 labeled articles per topic (four of them wrong) and 30 unlabeled per topic, trained once
    project = loop_project(labels=list(BBC_LABELS), queue_size=120)
    labeled = labeled_rows(BBC_LABELS, 0, 8)
    for row in labeled:
        row["label"] = FLIPPED.get(row["external_id"], row["label"])
    import_rows(as_admin, project.id, labeled)
    unlabeled = unlabeled_rows(BBC_LABELS, 8, 38)
    import_rows(as_admin, project.id, unlabeled)
    train(as_admin, project.id, diagnostics=worker.log_tail)

    # When the annotator answers every suspect item (keeping the given label: the detector was wrong)
    suspects = []
    while True:
        leased = as_annotator.get(f"/api/v1/projects/{project.id}/queue/next/", {"n": 20}).json()
        batch = [item for item in leased if item["reason"] == "suspect"]
        for item in leased:
            if item["reason"] != "suspect":
                as_annotator.post(f"/api/v1/queue/{item['id']}/skip/")
        if not batch:
            break
        for item in batch:
            example = Example.objects.get(pk=item["example"]["id"])
            given = example.labels.get().name
            response = as_annotator.post(f"/api/v1/queue/{item['id']}/submit/", {"label": given}, format="json")
            assert response.status_code == 201, response.content
            suspects.append(example.id)
    assert suspects, "the first version flagged nothing: the test has nothing to check"
    assert Example.objects.filter(id__in=suspects, settled=True).count() == len(suspects)

    # and the model is retrained
    train(as_admin, project.id, diagnostics=worker.log_tail)

    # Then none of the settled examples is queued as suspect again
    requeued = QueueItem.objects.filter(project=project, reason="suspect", example_id__in=suspects,
                                        status__in=["pending", "leased"])
    assert not requeued.exists()
    # and the noise report counts them apart from the open issues
    report = as_admin.get(f"/api/v1/projects/{project.id}/noise-report/", {"page_size": 200}).json()
    open_ids = {issue["example_id"] for issue in report["issues"]["results"]}
    assert not open_ids & set(suspects)
    assert report["detector"]["reviewed"] == len(suspects)
    assert report["detector"]["confirmed_errors"] == 0 and report["detector"]["precision"] == 0.0
    # and the stopping signal compared version 2 with version 1 (a kappa, or why not)
    stability = ModelVersion.objects.get(project=project, number=2).stability
    assert stability.get("against_version") == 1 or stability.get("reason"), stability
    # and the effective mix gave up most of the suspect share (people confirmed every flag)
    project = Project.objects.get(pk=project.pk)
    if len(suspects) >= 10:
        assert project.queue_state["mix"]["suspect"] < 0.25
    # and a lease of 20 draws reasons in proportion to that mix
    leased = as_annotator.get(f"/api/v1/projects/{project.id}/queue/next/", {"n": 20}).json()
    reasons = [item["reason"] for item in leased]
    first_labels = sum(reason != "suspect" for reason in reasons)
    assert first_labels >= 0.7 * len(reasons), reasons
    assert all("strategy" in item["explanation"] or item["reason"] != "uncertain" for item in leased)
