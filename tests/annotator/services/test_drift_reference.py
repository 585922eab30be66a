"""Drift references: the pool reference is built from what the scoring job stored (scores of the unlabeled
examples, their saved pool embeddings) with the labeled split weighted in; production samples and labeled
examples stay out of the pool; the setting picks a production baseline instead; every window records the
reference it was compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from annotator.models import DriftWindow, Example, ModelVersion, Project, Source
from annotator.services.drift_reference import (
    POOL_FILE,
    drift_baseline_save,
    drift_reference_for,
    drift_reference_update,
)
from annotator.services.examples import examples_import
from annotator.services.pool_embeddings import pool_embeddings_save
from annotator.services.projects import project_update_settings
from annotator.services.scoring import save_scores, score_rows
from annotator.serving import version_dir
from training.drift_reference import DriftReference, build_drift_reference

pytestmark = pytest.mark.django_db

NAMES = ["positive", "negative", "neutral"]
D = 16


@pytest.fixture(autouse=True)
def _artifacts(settings: Any, tmp_path: Any) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


def _examples(project: Project, admin: Any, n: int, prefix: str, *, label: str | None = None,
              source: str = Source.IMPORT) -> list[Example]:
    rows = [{"external_id": f"{prefix}{i}", "text": f"{prefix} text number {i}", **({"label": label} if label else {})}
            for i in range(n)]
    result = examples_import(project=project, user=admin, rows=rows, default_source=source)
    return list(Example.objects.filter(id__in=result.ids).order_by("id"))


def _version(project: Project, *, n_labeled: int) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project, number=1, status=ModelVersion.Status.READY,
        snapshot={"n_labeled": n_labeled, "per_source": {"import": n_labeled}})


def _probs(rng: np.random.Generator, n: int, classes: list[int], confidence: float) -> np.ndarray:
    probs = np.full((n, 3), (1 - confidence) / 2)
    probs[np.arange(n), rng.choice(classes, size=n)] = confidence
    return probs


def _scores(version: ModelVersion, examples: list[Example], probs: np.ndarray, **extra: Any) -> None:
    predicted = [NAMES[int(p.argmax())] for p in probs]
    rows = score_rows(version, [e.id for e in examples], probs, predicted, False)
    for row in rows:
        for key, value in extra.items():
            setattr(row, key, value)
    save_scores(version, rows)


def _embeddings(rng: np.random.Generator, n: int, *, axis: int | None = None) -> np.ndarray:
    """Random directions without component 0, or (``axis=0``) all along component 0."""
    x = rng.normal(size=(n, D))
    x[:, 0] = 0.0
    if axis is not None:
        x = np.zeros((n, D))
        x[:, axis] = 1.0
    return x


@pytest.fixture
def scored(project: Project, admin: Any) -> dict[str, Any]:
    """A version the scoring job is done with: 60 pool examples (predicted positive or negative, sure), 10
    production samples (predicted neutral, along their own embedding axis), 20 labeled examples with noise
    scores, and the train job's labeled-split reference (the queue's picks: unsure, mostly negative)."""
    rng = np.random.default_rng(0)
    pool = _examples(project, admin, 60, "pool")
    production = _examples(project, admin, 10, "prod", source=Source.PRODUCTION)
    labeled = _examples(project, admin, 20, "lab", label="negative")
    version = _version(project, n_labeled=20)
    _scores(version, pool, _probs(rng, 60, [0, 1], 0.9))
    _scores(version, production, _probs(rng, 10, [2], 0.9))
    _scores(version, labeled, _probs(rng, 20, [1], 0.5), label_quality=0.5, is_issue=False)
    pool_embeddings_save(version, 0, [e.id for e in pool], _embeddings(rng, 60))
    pool_embeddings_save(version, 1, [e.id for e in production], _embeddings(rng, 10, axis=0))
    labeled_split = build_drift_reference(
        probs=_probs(rng, 6, [1], 0.5), label_names=NAMES, embeddings=_embeddings(rng, 6),
        texts=[f"lab text number {i}" for i in range(6)])
    directory = version_dir(version)
    directory.mkdir(parents=True, exist_ok=True)  # pool_embeddings_save made it
    labeled_split.save(directory / "drift-reference")
    return {"version": version, "pool": pool, "production": production, "labeled": labeled,
            "labeled_split": labeled_split}


def test_the_pool_reference_is_built_from_the_scored_pool_and_the_labeled_split(scored):
    version = scored["version"]

    description = drift_reference_update(version=version)

    # the pool is the 60 unlabeled examples outside production; the 20 labels are a quarter of the data
    assert description is not None
    assert description["kind"] == "pool" and description["model_version"] == 1
    assert description["n_pool"] == 60 and description["n_sampled"] == 60
    assert description["n_labeled"] == 20 and description["labeled_share"] == 0.25
    assert "unlabeled pool" in description["summary"] and "validation split" in description["summary"]
    reference = DriftReference.load(version_dir(version) / POOL_FILE)
    assert reference.description == description
    # the class mix is the pool's (positive/negative) weighted 3:1 with the labeled split's (negative);
    # no neutral: production samples are not part of the pool
    pool_shares = np.bincount([NAMES.index(p) for p in _predicted(version, scored["pool"])], minlength=3) / 60
    assert reference.class_shares == pytest.approx(0.75 * pool_shares + 0.25 * np.array([0, 1, 0]), abs=0.02)
    assert reference.class_shares[2] == 0
    # embeddings come from the saved pool embeddings (and the labeled split), never the production axis
    assert reference.has_embeddings and np.abs(reference.embedding_sample[:, 0]).max() < 1e-3
    # confidences mix the sure pool (0.9) and the unsure labeled split (0.5)
    assert sorted({round(float(c), 2) for c in reference.confidences}) == [0.5, 0.9]
    assert reference.n_texts > 0


def _predicted(version: ModelVersion, examples: list[Example]) -> list[str]:
    from annotator.models import ExampleScore

    by_id = dict(ExampleScore.objects.filter(model_version=version).values_list("example_id", "predicted"))
    return [by_id[e.id][0] for e in examples]


def test_the_pool_reference_is_deterministic(scored):
    version = scored["version"]
    drift_reference_update(version=version)
    first = DriftReference.load(version_dir(version) / POOL_FILE)
    drift_reference_update(version=version)
    second = DriftReference.load(version_dir(version) / POOL_FILE)
    assert np.array_equal(first.embedding_sample, second.embedding_sample)
    assert np.array_equal(first.confidences, second.confidences)
    assert np.array_equal(first.class_counts, second.class_counts)


def test_windows_use_the_pool_reference_once_it_exists_and_the_labeled_split_before(scored):
    version = scored["version"]

    before = drift_reference_for(version=version)
    assert before.record["kind"] == "labeled_split" and "no scored pool" in before.record["fallback"]
    assert before.record["setting"] == "pool" and not before.becomes_baseline

    drift_reference_update(version=version)
    after = drift_reference_for(version=version)
    assert after.record["kind"] == "pool" and "fallback" not in after.record
    assert after.reference.description["n_pool"] == 60


def test_an_empty_pool_keeps_the_labeled_split(project, admin):
    version = _version(project, n_labeled=20)
    labeled = _examples(project, admin, 4, "lab", label="positive")
    _scores(version, labeled, _probs(np.random.default_rng(1), 4, [0], 0.8), label_quality=0.8)
    directory = version_dir(version)
    directory.mkdir(parents=True, exist_ok=True)  # pool_embeddings_save made it
    build_drift_reference(probs=_probs(np.random.default_rng(2), 8, [0, 1], 0.8), label_names=NAMES).save(
        directory / "drift-reference")

    assert drift_reference_update(version=version) is None
    assert not (directory / f"{POOL_FILE}.json").exists()
    assert drift_reference_for(version=version).record["kind"] == "labeled_split"


def test_the_production_baseline_setting_makes_the_first_window_the_reference(
        scored, project, django_capture_on_commit_callbacks):
    version = scored["version"]
    drift_reference_update(version=version)
    project_update_settings(project=project, settings={"drift_reference": "production_baseline"})
    version.refresh_from_db()

    first = drift_reference_for(version=version)
    assert first.becomes_baseline and first.record["kind"] == "pool" and first.record["became_baseline"]

    rng = np.random.default_rng(3)
    with django_capture_on_commit_callbacks(execute=True):
        baseline = drift_baseline_save(version=version, sequence=4, label_names=NAMES,
                                       probs=_probs(rng, 30, [2], 0.7), embeddings=_embeddings(rng, 30),
                                       token_stats=None, texts=[f"live {i}" for i in range(30)])
    assert baseline.record["kind"] == "production_baseline" and baseline.record["window_sequence"] == 4

    later = drift_reference_for(version=version)
    assert not later.becomes_baseline
    assert later.record["kind"] == "production_baseline" and later.record["setting"] == "production_baseline"
    assert later.reference.class_shares[2] == 1.0


# --- drift_check records the reference ---------------------------------------------------------------------
@dataclass
class _Prediction:
    probs: np.ndarray
    embeddings: np.ndarray
    token_stats: Any
    labels: list[str]


class _Predictor:
    """Stands in for the serving version's model: pool-like predictions for every text."""

    label_names = NAMES

    def predict(self, texts: list[str], **_: Any) -> _Prediction:
        rng = np.random.default_rng(len(texts))
        probs = _probs(rng, len(texts), [0, 1], 0.9)
        return _Prediction(probs, _embeddings(rng, len(texts)), None, [NAMES[int(p.argmax())] for p in probs])


def _serve(project: Project, version: ModelVersion, monkeypatch: Any) -> None:
    from annotator.services import production

    Project.objects.filter(pk=project.pk).update(serving_version=version)
    monkeypatch.setattr(production, "predictor_for", lambda _version: _Predictor())


def test_each_window_records_the_reference_it_was_compared_with(scored, project, admin, monkeypatch, as_reviewer):
    from annotator.services.production import drift_check

    version = scored["version"]
    drift_reference_update(version=version)
    project_update_settings(project=project, settings={"drift_window_size": 10})
    _serve(project, version, monkeypatch)
    _examples(project, admin, 20, "live", source=Source.PRODUCTION)

    windows = drift_check(project.id)

    # the 10 production samples scored earlier and the 20 new ones: three windows, all against the pool
    assert len(windows) == 3
    assert all(w.details["reference"]["kind"] == "pool" for w in windows)
    assert all(w.details["reference"]["model_version"] == 1 for w in windows)
    body = as_reviewer.get(f"/api/v1/projects/{project.id}/drift/").json()
    assert [r["reference"]["kind"] for r in body["results"]] == ["pool"] * 3
    assert body["results"][0]["reference"]["summary"].startswith("the unlabeled pool scored by v1")
    assert {t["name"] for t in body["results"][0]["details"]["tests"]} >= {"class_mix", "confidence"}


def test_with_a_production_baseline_the_first_window_becomes_the_reference(scored, project, admin, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    from annotator.services.production import drift_check

    version = scored["version"]
    drift_reference_update(version=version)
    project_update_settings(project=project, settings={"drift_window_size": 10,
                                                       "drift_reference": "production_baseline"})
    _serve(project, version, monkeypatch)
    _examples(project, admin, 20, "live", source=Source.PRODUCTION)

    with django_capture_on_commit_callbacks(execute=True):
        drift_check(project.id)

    first, second, third = DriftWindow.objects.filter(project=project).order_by("sequence")
    assert first.details["reference"]["kind"] == "pool" and first.details["reference"]["became_baseline"]
    for window in (second, third):
        assert window.details["reference"]["kind"] == "production_baseline"
        assert window.details["reference"]["window_sequence"] == first.sequence
    assert (version_dir(version) / "drift-reference-production.json").exists()


# --- the setting ------------------------------------------------------------------------------------------------
def test_a_bad_drift_reference_setting_is_a_400_naming_the_field(project, as_admin):
    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {"settings": {"drift_reference": "training"}},
                              format="json")
    assert response.status_code == 400, response.content
    assert "settings.drift_reference" in {error.get("field") for error in response.json()["errors"]}
    assert Project.objects.get(pk=project.pk).setting("drift_reference") == "pool"

    response = as_admin.patch(f"/api/v1/projects/{project.id}/",
                              {"settings": {"drift_reference": "production_baseline"}}, format="json")
    assert response.status_code == 200, response.content
    assert Project.objects.get(pk=project.pk).setting("drift_reference") == "production_baseline"
