"""Embed once (issue 15): the pool is embedded once per encoder fingerprint and kept; a frozen-mode version
rescores it with its head alone, and a pushed sample goes through the model once.

The whole loop runs in this process (Celery eager: every task the services send runs inline as its
transaction commits), so every text that goes through an encoder is seen by the counting wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from annotator.celery import app
from annotator.models import DriftWindow, Example, ModelVersion, Project
from annotator.services.annotations import annotation_create
from annotator.services.production import drift_check
from tests.annotator.loop.corpus import articles, labeled_rows, unlabeled_rows

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LABELS = ["business", "sports", "tech"]


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text any encoder embeds (any backend), in order."""
    from training.encoder import Encoder

    seen: list[str] = []
    original = Encoder.embed

    def counting(self: Encoder, texts: Any, **kwargs: Any) -> Any:
        seen.extend(texts)
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Encoder, "embed", counting)
    return seen


@pytest.fixture
def inline_tasks(settings: Any, tmp_path: Any) -> Iterator[None]:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.EMBEDDING_CACHE_DIR = tmp_path / "embedding-cache"
    settings.TRAINING_DEVICE = "cpu"
    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def _train(client: Any, project: Project) -> ModelVersion:
    response = client.post(f"/api/v1/projects/{project.id}/train/", {"mode": "frozen"}, format="json")
    assert response.status_code == 202, response.content
    job = client.get(f"/api/v1/jobs/{response.json()['job']['id']}/").json()
    assert job["status"] == "succeeded", job
    return ModelVersion.objects.get(project=project, number=job["result"]["model_version"])


def _project(make_project: Callable[..., Project], admin: Any, **settings: Any) -> Project:
    return make_project(admin, labels=LABELS, settings={"max_length": 64, "promotion": "auto", **settings})


def test_a_second_frozen_cycle_embeds_nothing_of_the_pool(
    inline_tasks: None, embedded: list[str], make_project: Any, admin: Any, as_admin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a project with 12 labels per class and a pool of 45 unlabeled articles, trained once (frozen)
    project = _project(make_project, admin)
    as_admin.post(f"/api/v1/projects/{project.id}/examples/", labeled_rows(LABELS, 0, 12), format="json")
    as_admin.post(f"/api/v1/projects/{project.id}/examples/", unlabeled_rows(LABELS, 40, 55), format="json")
    pool = set(articles("business", 40, 55) + articles("sports", 40, 55) + articles("tech", 40, 55))
    first = _train(as_admin, project)
    assert pool <= set(embedded), "the first cycle embeds the pool"
    assert first.mode == "frozen"

    # When someone labels three pool examples and the project trains again
    for example in Example.objects.filter(project=project, label_source="").order_by("id")[:3]:
        annotation_create(example=example, user=admin, labels=["business"])
    unlabeled = Example.objects.filter(project=project, label_source="")
    pool = set(unlabeled.values_list("text", flat=True))
    assert len(pool) == 42
    embedded.clear()
    from annotator.services import scoring

    read_by_id: list[int] = []
    original = scoring.pool_embedding_rows

    def counting(version: Any, ids: Any) -> Any:
        found, rows = original(version, ids)
        read_by_id.append(int(found.sum()))
        return found, rows

    monkeypatch.setattr(scoring, "pool_embedding_rows", counting)
    second = _train(as_admin, project)

    # Then the second cycle read the pool's vectors by id from the first version's files (no text hashed)
    assert sum(read_by_id) == 42, read_by_id
    # and ran no pool text through any encoder (the three new labels may go through the
    # noise stage's fine-tuned folds, whose encoders are their own), and still scored the whole pool
    assert not pool & set(embedded), f"{len(pool & set(embedded))} pool texts embedded again"
    assert all(e.latest_score.model_version_id == second.id for e in unlabeled.select_related("latest_score"))


def test_a_changed_encoder_fingerprint_never_reuses_old_embeddings(
    inline_tasks: None, embedded: list[str], make_project: Any, admin: Any, as_admin: Any,
) -> None:
    # Given a project trained once at 64 tokens
    project = _project(make_project, admin)
    as_admin.post(f"/api/v1/projects/{project.id}/examples/", labeled_rows(LABELS, 0, 12), format="json")
    as_admin.post(f"/api/v1/projects/{project.id}/examples/", unlabeled_rows(LABELS, 40, 50), format="json")
    _train(as_admin, project)

    # When its preprocessing changes (48 tokens: another fingerprint) and it trains again
    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {"settings": {"max_length": 48}}, format="json")
    assert response.status_code == 200, response.content
    embedded.clear()
    _train(as_admin, project)

    # Then every labeled and pool text went through the encoder again
    texts = set(Example.objects.filter(project=project).values_list("text", flat=True))
    assert texts <= set(embedded), f"{len(texts - set(embedded))} texts reused vectors of the old encoder"


def test_a_pushed_sample_is_predicted_once(
    inline_tasks: None, embedded: list[str], make_project: Any, admin: Any, as_admin: Any,
) -> None:
    # Given a project with a serving version and a drift window of 5
    project = _project(make_project, admin, drift_window_size=5)
    as_admin.post(f"/api/v1/projects/{project.id}/examples/", labeled_rows(LABELS, 0, 12), format="json")
    _train(as_admin, project)
    project.refresh_from_db()
    assert project.serving_version is not None
    samples = articles("tech", 80, 85) + articles("sports", 80, 85)

    # When production pushes 10 samples (the push checks drift, inline here) and drift is checked again
    embedded.clear()
    response = as_admin.post(f"/api/v1/projects/{project.id}/samples/",
                             [{"text": text} for text in samples], format="json")
    assert response.status_code in (200, 201), response.content
    assert len(response.json()["predictions"]) == 10
    drift_check(project.id)

    # Then each sample went through the model exactly once, and its windows were checked
    assert sorted(embedded) == sorted(samples)
    assert DriftWindow.objects.filter(project=project).count() == 2
