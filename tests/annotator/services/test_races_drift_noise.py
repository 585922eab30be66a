"""Races and small defects of drift checks, drift routing, suspect explanations and the noise report.

Drift checks predict outside any transaction and write each window in a short one (re-checking that no
other check recorded it meanwhile); on PostgreSQL an advisory lock still runs one check per project at a
time. On the embedded SQLite default a check's transaction holds the database's only write lock, so the
race with pushes runs there, in a subprocess (``sqlite_drift_race``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction

from annotator.errors import InvalidInput
from annotator.models import (
    Annotation,
    AnnotationKind,
    DriftWindow,
    Example,
    ExampleScore,
    ModelVersion,
    Project,
    QueueItem,
)
from annotator.services import noise, production
from annotator.services.annotations import annotation_create
from annotator.services.drift_reference import ChosenReference
from annotator.services.noise import noise_decisions_apply
from annotator.services.projects import project_update_settings
from annotator.services.queue import queue_add, queue_add_many, queue_lease, queue_submit
from annotator.services.queue_policy import pick_items
from training.drift_reference import build_drift_reference

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["positive", "negative", "neutral"]


# --- drift checks on the embedded SQLite default ------------------------------------------------------------
def _race_on_sqlite(tmp_path: Path, scenario: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DATA_DIR=str(tmp_path), ARTIFACT_DIR=str(tmp_path / "artifacts"), SECRET_KEY="test-only-secret")
    done = subprocess.run([sys.executable, "-m", "tests.annotator.services.sqlite_drift_race", scenario],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pushes_succeed_while_a_drift_check_runs_on_sqlite(tmp_path):
    # Given five full windows waiting, and a check that spends 0.8 s predicting each one
    # When three clients push samples while it predicts
    outcome = _race_on_sqlite(tmp_path, "pushes")

    # Then every push is stored (none fails with "database is locked") and every window is measured
    assert outcome["errors"] == []
    assert outcome["pushes"] == outcome["pushes_expected"] == 12
    assert [sequence for sequence, _, _ in outcome["windows"]][:5] == [0, 1, 2, 3, 4]


def test_two_drift_checks_at_once_on_sqlite_record_each_window_once(tmp_path):
    # SQLite has no advisory lock: a duplicate check (a redelivered task, two pushes' checks) runs alongside
    outcome = _race_on_sqlite(tmp_path, "two_checks")

    assert outcome["errors"] == []
    assert outcome["windows"] == [[s, 10 * s + 1, 10 * s + 10] for s in range(5)]


# --- drift checks on PostgreSQL -----------------------------------------------------------------------------
@dataclass
class _Prediction:
    probs: np.ndarray
    embeddings: np.ndarray
    token_stats: Any
    labels: list[str]


class _Predictor:
    label_names = NAMES

    def __init__(self, during: Any = None) -> None:
        self.during = during  # called on every drift-check prediction, before it answers
        self.in_transaction: list[bool] = []

    def predict(self, texts: list[str], **_: Any) -> _Prediction:
        self.in_transaction.append(connection.in_atomic_block)
        if self.during is not None:
            self.during()
        probs = np.tile([0.8, 0.15, 0.05], (len(texts), 1))
        return _Prediction(probs, np.ones((len(texts), 8)), None, ["positive"] * len(texts))


def _serving(project: Project, admin: Any, predictor: _Predictor, monkeypatch: Any, *, samples: int) -> None:
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    Project.objects.filter(pk=project.pk).update(serving_version=version)
    project_update_settings(project=project, settings={"drift_window_size": 10})
    rng = np.random.default_rng(0)
    reference = build_drift_reference(probs=rng.dirichlet(np.ones(3), size=40), label_names=NAMES,
                                      embeddings=rng.normal(size=(40, 8)))
    monkeypatch.setattr(production, "predictor_for", lambda _version: predictor)
    monkeypatch.setattr(production, "drift_reference_for",
                        lambda version: ChosenReference(reference, {"kind": "pool", "summary": "test"}))
    from annotator.services.examples import examples_import

    examples_import(project=project, user=admin, default_source="production",
                    rows=[{"external_id": f"live{i}", "text": f"live sample {i}"} for i in range(samples)])


def test_a_window_another_check_recorded_meanwhile_is_not_recorded_again(project, admin, monkeypatch):
    # Given a check predicting the first window while another check (a redelivered task) records it
    def other_check_records_it() -> None:
        if not DriftWindow.objects.filter(project=project).exists():
            ids = list(Example.objects.filter(project=project).order_by("id").values_list("id", flat=True))
            first, last = ids[0], ids[9]
            DriftWindow.objects.create(project=project, sequence=0, first_example_id=first, last_example_id=last,
                                       n=10)

    _serving(project, admin, _Predictor(during=other_check_records_it), monkeypatch, samples=20)

    # When the check goes to record its windows
    created = production.drift_check(project.id)

    # Then it records nothing twice (no unique-sequence error) and leaves the rest to the check that got there
    assert created == []
    assert list(DriftWindow.objects.filter(project=project).values_list("sequence", flat=True)) == [0]


@pytest.mark.django_db(transaction=True)
def test_drift_checks_predict_outside_transactions_and_still_wait_for_each_other(project, admin, monkeypatch):
    predictor = _Predictor()
    _serving(project, admin, predictor, monkeypatch, samples=20)
    keys = [production._DRIFT_LOCK_SPACE, project.id]
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def check() -> None:
        try:
            outcome["windows"] = production.drift_check(project.id)
        finally:
            connection.close()
            finished.set()

    # Given another check of the project holding the drift lock
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", keys)
    try:
        worker = threading.Thread(target=check)
        worker.start()
        # Then a second check waits for it
        assert not finished.wait(1.0)
        assert not DriftWindow.objects.filter(project=project).exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
    # and measures both windows once the first is done, predicting with no transaction open
    assert finished.wait(60)
    worker.join()
    assert len(outcome["windows"]) == 2
    assert predictor.in_transaction == [False, False]


# --- multi-label drift routing --------------------------------------------------------------------------------
def test_multi_label_drift_routes_the_least_confident_samples(multi_project, admin, make_examples):
    # Given an alerting window of ten: eight the model is sure about, two at its 0.5 thresholds
    examples = make_examples(multi_project, admin, [{"text": f"live {i}", "source": "production"} for i in range(10)])
    version = ModelVersion.objects.create(project=multi_project, number=1, status=ModelVersion.Status.READY)
    probs = np.tile([0.99, 0.01, 0.98], (10, 1))
    probs[3] = [0.5, 0.45, 0.55]
    probs[7] = [0.6, 0.5, 0.4]

    # When the window's share (two samples) is routed to the queue
    actions = production._route_drifted(multi_project, version, [e.id for e in examples], probs,
                                        SimpleNamespace(reasons=["embedding drift"]))

    # Then the two samples the model is least sure of are queued, the most uncertain first
    items = QueueItem.objects.filter(project=multi_project, reason=QueueItem.Reason.DRIFT).order_by("-priority")
    assert [item.example_id for item in items] == [examples[3].id, examples[7].id]
    assert actions == ["routed 2 of the window's 10 samples to the queue (reason drift)"]


def test_single_label_drift_still_routes_the_highest_entropy(project, admin, make_examples):
    examples = make_examples(project, admin, [{"text": f"live {i}", "source": "production"} for i in range(5)])
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    probs = np.tile([0.9, 0.05, 0.05], (5, 1))
    probs[2] = [0.34, 0.33, 0.33]
    production._route_drifted(project, version, [e.id for e in examples], probs, SimpleNamespace(reasons=["x"]))
    assert list(QueueItem.objects.filter(project=project).values_list("example_id", flat=True)) == [examples[2].id]


# --- suspect explanations with suggestions hidden -----------------------------------------------------------------
def _flagged(project: Project, examples: list[Any], *, suggested: str = "negative",
             number: int = 1) -> ModelVersion:
    version = ModelVersion.objects.create(project=project, number=number, status=ModelVersion.Status.READY,
                                          metrics={"noise": {"estimated_noise_rate": 0.5}})
    for example in examples:
        ExampleScore.objects.create(example=example, model_version=version, probs=[0.2, 0.8, 0.0],
                                    predicted=[suggested], confidence=0.8, entropy=0.5, margin=0.6,
                                    label_quality=0.2, is_issue=True, suggested_label=suggested)
    return version


def test_a_suspect_queued_while_suggestions_showed_does_not_name_it_once_they_are_hidden(
        project, admin, make_examples, as_annotator):
    # Given a suspect item queued while the project showed suggestions ("the model suggests negative")
    examples = make_examples(project, admin, [{"text": "dull film", "label": "positive"}])
    version = _flagged(project, examples)
    picked, _ = pick_items(project, version, {"suspect": 1})
    queue_add_many(project=project, reason=QueueItem.Reason.SUSPECT, items=picked["suspect"],
                   model_version_id=version.id)
    assert "negative" in QueueItem.objects.get().explanation

    # When a data lead hides suggestions and an annotator leases the item
    project_update_settings(project=project, settings={"show_suggestions": False})
    [item] = as_annotator.get(f"/api/v1/projects/{project.id}/queue/next/", {"n": 1}).json()

    # Then neither the explanation nor the suggestion names the suggested label
    assert item["reason"] == "suspect" and item["suggestion"] is None
    assert "negative" not in item["explanation"]
    # (a held-out example's explanation says so first, whatever its id hashes to)
    assert item["explanation"].endswith("label quality 0.20; the detector doubts this label")


# --- the noise report after a relabel to the suggestion --------------------------------------------------------
def _report(client: Any, project: Project, **params: str) -> list[tuple[int, Any, str]]:
    body = client.get(f"/api/v1/projects/{project.id}/noise-report/", params).json()
    return [(row["example_id"], row["given_label"], row["suggested_label"]) for row in body["issues"]["results"]]


def test_an_example_relabeled_to_the_suggestion_through_the_queue_leaves_the_noise_report(
        project, admin, annotator, reviewer, make_examples, as_reviewer):
    # Given three flagged labels the detector suggests "negative" for
    fixed, kept, open_ = make_examples(project, admin, [{"text": f"film {i}", "label": "positive"} for i in range(3)])
    _flagged(project, [fixed, kept, open_])
    # When an annotator re-checks two through the queue, relabeling one to the suggestion and keeping one
    queue_add(project=project, examples=[fixed, kept], reason=QueueItem.Reason.SUSPECT, priority=1.0)
    for item in queue_lease(project=project, user=annotator, n=2):
        queue_submit(user=annotator, item_id=item.id,
                     data={"label": "negative" if item.example_id == fixed.id else "positive"})

    # Then neither the open issues nor the settled flags list it as "given negative, suggested negative"
    assert _report(as_reviewer, project) == [(open_.id, "positive", "negative")]
    assert _report(as_reviewer, project, settled="true") == [(kept.id, "positive", "negative")]
    body = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/").json()
    assert body["settled"] == 1 and body["expected_errors"]["open"] == 1


def test_a_plain_relabel_to_the_suggestion_leaves_the_open_issues(project, admin, make_examples, as_reviewer):
    fixed, open_ = make_examples(project, admin, [{"text": f"film {i}", "label": "positive"} for i in range(2)])
    _flagged(project, [fixed, open_])
    annotation_create(example=fixed, user=admin, labels=["negative"])  # not a re-check: not settled

    assert _report(as_reviewer, project) == [(open_.id, "positive", "negative")]
    assert _report(as_reviewer, project, settled="true") == []


def test_a_multi_label_relabel_to_the_suggestion_leaves_the_noise_report(multi_project, admin, make_examples,
                                                                        api_client, reviewer):
    exact, partial, more = make_examples(multi_project, admin, [
        {"text": "match report", "labels": ["food"]},
        {"text": "gadget recipes", "labels": ["food"]},
        {"text": "sports gadgets", "labels": ["food"]},
    ])
    version = ModelVersion.objects.create(project=multi_project, number=1, status=ModelVersion.Status.READY,
                                          metrics={"noise": {"estimated_noise_rate": 0.5}})
    for example in (exact, partial, more):
        ExampleScore.objects.create(example=example, model_version=version, probs=[0.9, 0.1, 0.9],
                                    predicted=["sports", "tech"], confidence=0.9, entropy=0.4, margin=0.0,
                                    label_quality=0.1, is_issue=True, suggested_label="sports,tech")
    annotation_create(example=exact, user=admin, labels=["sports", "tech"])
    annotation_create(example=partial, user=admin, labels=["sports"])
    annotation_create(example=more, user=admin, labels=["sports", "food", "tech"])

    rows = _report(api_client(reviewer), multi_project)

    assert sorted(example_id for example_id, _, _ in rows) == [partial.id, more.id]


# --- noise decisions -------------------------------------------------------------------------------------------------
def test_an_unknown_example_is_reported_at_its_own_row(project, admin, reviewer, make_examples):
    [example] = make_examples(project, admin, [{"text": "fine", "label": "positive"}])
    rows = [{"example_id": "seven", "action": "keep"},
            {"example_id": example.id, "action": "keep"},
            {"example_id": 987654321, "action": "keep"}]

    with pytest.raises(InvalidInput) as raised:
        noise_decisions_apply(project=project, user=reviewer, rows=rows)

    assert [(e["index"], e["field"]) for e in raised.value.errors] == [(0, "example_id"), (2, "example_id")]
    assert "987654321" in raised.value.errors[1]["message"]
    assert not Annotation.objects.filter(kind=AnnotationKind.REVIEW).exists()


def test_the_api_names_the_row_of_an_unknown_example(project, admin, make_examples, as_reviewer):
    [example] = make_examples(project, admin, [{"text": "fine", "label": "positive"}])
    response = as_reviewer.post(f"/api/v1/projects/{project.id}/noise-report/decisions/", [
        {"example_id": example.id, "action": "dance"},
        {"example_id": 987654321, "action": "keep"}], format="json")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "action"), (1, "example_id")]


def test_keep_records_the_label_current_when_the_decision_is_applied(project, admin, annotator, reviewer,
                                                                    make_examples, monkeypatch):
    # Given a label a reviewer decides to keep, while an annotator's answer changes it just before the
    # decision's transaction begins
    [example] = make_examples(project, admin, [{"text": "so-so film", "label": "positive"}])
    real_atomic = transaction.atomic

    def answer_then_atomic(*args: Any, **kwargs: Any) -> Any:
        annotation_create(example=example, user=annotator, labels=["negative"])
        return real_atomic(*args, **kwargs)

    monkeypatch.setattr(noise, "transaction", SimpleNamespace(atomic=answer_then_atomic))

    # When the decision is applied
    noise_decisions_apply(project=project, user=reviewer, rows=[{"example_id": example.id, "action": "keep"}])

    # Then the review keeps the label that was current when it was recorded, not the one read before
    review = Annotation.objects.get(example=example, kind=AnnotationKind.REVIEW)
    assert review.labels == ["negative"]
    assert example.labels.get().name == "negative"
