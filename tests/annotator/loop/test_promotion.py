"""Numbers you can trust, with the real worker: versions are measured on a stable holdout with intervals, a
clearly worse candidate (trained on shuffled labels) is not promoted, people can still promote it and roll
back, and a multi-label version's stored holdout metrics are what its served predictions give."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from annotator.models import Example, ModelVersion, Project
from annotator.services.annotations import annotation_create
from annotator.services.holdout import HOLDOUT_SHARE, holdout_hash
from annotator.serving import predictor_for, version_dir
from tests.annotator.loop.corpus import labeled_rows
from tests.annotator.loop.steps import import_rows, train
from training.data import BBC_LABELS
from training.metrics import evaluate, metric_intervals

TOPICS = list(BBC_LABELS[:4])


def import_until_measurable(client: APIClient, project_id: int, *, multi: bool = False) -> dict[int, str]:
    """Import labeled articles, 12 per topic at a time, until the holdout (all imports are eligible) holds at
    least 36 labels with 4 or more per topic. Returns example id -> topic."""
    topic_of: dict[int, str] = {}
    start = 0
    while True:
        rows = labeled_rows(TOPICS, start, start + 12)
        if multi:
            rows = [{"external_id": r["external_id"], "text": r["text"], "labels": [r["label"]]} for r in rows]
        ids = import_rows(client, project_id, rows)
        topic_of.update({pk: row["external_id"].split("-")[1] for pk, row in zip(ids, rows, strict=True)})
        start += 12
        held = Counter(topic for pk, topic in topic_of.items() if holdout_hash(pk) < HOLDOUT_SHARE)
        if sum(held.values()) >= 36 and min(held[t] for t in TOPICS) >= 4:
            return topic_of
        assert start < 120, f"the corpus ran out before the holdout was measurable: {held}"


def models(client: APIClient, project_id: int) -> dict[int, dict[str, Any]]:
    response = client.get(f"/api/v1/projects/{project_id}/models/")
    assert response.status_code == 200, response.content
    return {row["number"]: row for row in response.json()["results"]}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_candidate_trained_on_shuffled_labels_is_not_promoted_and_people_decide(worker, loop_project, as_admin,
                                                                                   admin):
    # Given a project with enough imported labels for a measurable holdout, and version 1 serving
    project = loop_project(labels=TOPICS, queue_size=20)
    topic_of = import_until_measurable(as_admin, project.id)
    first = train(as_admin, project.id, diagnostics=worker.log_tail)
    assert first["result"]["promoted"] is True and first["result"]["promotion"] == "first version"
    v1 = models(as_admin, project.id)[1]
    held = {pk for pk in topic_of if holdout_hash(pk) < HOLDOUT_SHARE}
    assert v1["holdout"]["n"] == len(held) and v1["holdout"]["sources"] == {"import": len(held)}
    low, high = v1["holdout"]["macro_f1_ci"]
    assert low <= v1["macro_f1"] == v1["holdout"]["macro_f1"] <= high and v1["macro_f1"] > 0.6
    assert v1["promotion"]["decision"] == "first version"

    # When every label the models train on is shuffled (the held-out ones stay right) and version 2 is trained
    training_side = sorted(set(topic_of) - held)
    shuffled = [topic_of[pk] for pk in training_side]
    random.Random(0).shuffle(shuffled)
    for pk, label in zip(training_side, shuffled, strict=True):
        annotation_create(example=Example.objects.get(pk=pk), user=admin, labels=[label])
    second = train(as_admin, project.id, diagnostics=worker.log_tail)

    # Then version 2 is measured on the same held-out examples, is rejected with its evidence, and 1 serves
    assert second["result"]["promoted"] is False and second["result"]["promotion"] == "rejected"
    v2 = models(as_admin, project.id)[2]
    assert v2["holdout"]["n"] == len(held)
    evidence = v2["promotion"]["evidence"]
    assert v2["promotion"]["decision"] == "rejected" and evidence["shown_worse"] is True
    assert evidence["against_version"] == 1 and evidence["n"] == len(held)
    assert evidence["difference_ci"][1] < -evidence["margin"]
    assert evidence["serving_macro_f1"] == pytest.approx(v1["macro_f1"])
    assert Project.objects.get(pk=project.id).serving_version.number == 1
    prediction = as_admin.post(f"/api/v1/projects/{project.id}/predict/", {"texts": ["Shares fell."]}, format="json")
    assert prediction.json()["model_version"] == 1

    # When a reviewer promotes the rejected candidate by hand, then rolls back to version 1
    promoted = as_admin.post(f"/api/v1/models/{v2['id']}/promote/")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["promoted"] is True and promoted.json()["promotion"]["decision"] == "rejected"
    assert Project.objects.get(pk=project.id).serving_version.number == 2
    rolled_back = as_admin.post(f"/api/v1/models/{v1['id']}/promote/").json()

    # Then version 1 serves again and both moves are on record
    assert Project.objects.get(pk=project.id).serving_version.number == 1
    assert rolled_back["promotion"]["history"][-1]["rollback"] is True
    assert models(as_admin, project.id)[2]["promotion"]["history"][-1]["reason"] == f"promoted by {admin.username}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_multi_label_holdout_metrics_are_those_of_the_served_predictions(worker, loop_project, as_admin):
    # Given a multi-label project with a measurable holdout, trained once
    project = loop_project(labels=TOPICS, queue_size=20)
    Project.objects.filter(pk=project.id).update(task="multi_label")
    import_until_measurable(as_admin, project.id, multi=True)
    train(as_admin, project.id, diagnostics=worker.log_tail)
    version = ModelVersion.objects.get(project=project, number=1)
    stored = version.metrics["holdout"]
    assert "reason" not in stored, stored

    # When the served artifact predicts the held-out texts
    held = json.loads((version_dir(version) / "holdout.json").read_text())
    texts = dict(Example.objects.filter(id__in=held["example_ids"]).values_list("id", "text"))
    prediction = predictor_for(version).predict([texts[pk] for pk in held["example_ids"]], with_token_stats=False)
    y = np.array([[int(name in labels) for name in TOPICS] for labels in held["labels"]])
    served = prediction.predicted.astype(int)

    # Then the stored holdout metrics are exactly those of the served decisions and probabilities
    again = evaluate(y, served, TOPICS, probs=prediction.probs, multi_label=True)
    intervals = metric_intervals(y, served, TOPICS, multi_label=True)
    for key in ("n", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss"):
        assert stored[key] == again[key], key
    assert stored["macro_f1_ci"] == intervals["macro_f1"]
    assert stored["ece"] == pytest.approx(again["ece"], abs=1e-9)
    assert [row["f1"] for row in stored["per_class"]] == [row["f1"] for row in again["per_class"]]
    # and a class is served exactly when its served (calibrated) probability reaches the threshold that was
    # tuned on calibrated probabilities
    thresholds = np.array(version.metrics["validation"]["thresholds"])
    assert np.array_equal(prediction.predicted, prediction.probs >= thresholds)
    assert version.metrics["macro_f1"] == stored["macro_f1"]
