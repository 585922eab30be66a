"""The promotion decision's policy (services.models.decide_promotion) where no model has to predict: the first
version, the manual setting, comparisons that cannot be made fairly, and a decision taken only once. The
paired comparison itself runs against real models in tests/annotator/loop/test_promotion.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from annotator.errors import InvalidInput
from annotator.models import ModelVersion, Project
from annotator.services.holdout import HOLDOUT_RULE
from annotator.services.models import decide_promotion, model_promote
from annotator.services.projects import project_update_settings

pytestmark = pytest.mark.django_db

MEASURED = {"n": 50, "macro_f1": 0.8, "macro_f1_ci": [0.7, 0.88], "rule": dict(HOLDOUT_RULE)}
TOO_FEW = {"n": 8, "reason": "too few held-out labels to measure: 8 held out, at least 30 needed",
           "rule": dict(HOLDOUT_RULE)}


def _version(project: Project, number: int, holdout: dict[str, Any] | None) -> ModelVersion:
    metrics = {"macro_f1": holdout.get("macro_f1") if holdout else 0.9}
    if holdout is not None:
        metrics["holdout"] = holdout
    return ModelVersion.objects.create(project=project, number=number, status=ModelVersion.Status.READY,
                                       metrics=metrics, finished_at=timezone.now())


def _serving(project: Project) -> int | None:
    project.refresh_from_db()
    return project.serving_version.number if project.serving_version else None


def test_the_first_version_serves_even_under_manual_promotion_and_says_so(project):
    project_update_settings(project=project, settings={"promotion": "manual"})
    first = _version(project, 1, TOO_FEW)

    decision = decide_promotion(first)

    assert decision["decision"] == "first version"
    assert "promotion is manual" in decision["evidence"]["reason"]
    assert _serving(project) == 1
    first.refresh_from_db()
    assert first.comparison["policy"] == "manual"
    assert first.comparison["history"][0]["reason"] == "first version"


def test_manual_promotion_never_promotes_a_later_version(project):
    project_update_settings(project=project, settings={"promotion": "manual"})
    model_promote(version=_version(project, 1, MEASURED), reason="first version")
    second = _version(project, 2, TOO_FEW)

    decision = decide_promotion(second)

    assert decision["decision"] == "manual"
    assert _serving(project) == 1
    second.refresh_from_db()
    assert second.comparison["evidence"]["against_version"] == 1


def test_auto_promotes_when_the_holdout_is_too_small_to_show_anything(project):
    model_promote(version=_version(project, 1, MEASURED), reason="first version")
    second = _version(project, 2, TOO_FEW)

    decision = decide_promotion(second)

    assert decision["decision"] == "promoted"
    assert decision["evidence"]["reason"].startswith("no comparison: too few held-out labels to measure")
    assert _serving(project) == 2
    second.refresh_from_db()
    assert second.comparison["history"][0]["reason"] == "promoted automatically: not shown worse than v1"


def test_a_serving_version_from_before_the_holdout_is_no_fair_comparison(project):
    model_promote(version=_version(project, 1, None), reason="first version")
    second = _version(project, 2, MEASURED)

    decision = decide_promotion(second)

    assert decision["decision"] == "promoted"
    assert "trained before the stable holdout" in decision["evidence"]["reason"]


def test_the_decision_is_taken_once(project):
    model_promote(version=_version(project, 1, MEASURED), reason="first version")
    second = _version(project, 2, TOO_FEW)
    decide_promotion(second)
    model_promote(version=ModelVersion.objects.get(project=project, number=1), reason="rolled back by rita")

    again = decide_promotion(second)

    assert again["decision"] == "promoted"
    assert _serving(project) == 1  # the rollback stands


def test_a_bad_promotion_setting_is_refused_naming_the_field(project):
    with pytest.raises(InvalidInput) as error:
        project_update_settings(project=project, settings={"promotion": "sometimes"})

    assert error.value.errors == [{"field": "settings.promotion", "message": "must be one of auto, manual"}]
    project.refresh_from_db()
    assert project.setting("promotion") == "auto"


# --- promotion waits until scoring succeeded ------------------------------------------------------------------
class _Scores:
    """What a predictor answers, for scoring without a model: every text gets the same probabilities."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.probs = np.tile([0.5, 0.3, 0.2], (n, 1))
        self.labels = ["positive"] * n
        self.embeddings = np.zeros((n, 4), dtype=np.float32)
        self.predicted = np.zeros(n, dtype=np.int64)


class _Predictor:
    embedding_key = "stand-in"  # the key its pool vectors are saved under (frozen-mode scoring)

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def predict(self, texts: list[str], **_: Any) -> _Scores:
        if self.fail:
            raise RuntimeError("the scoring worker lost its model")
        return _Scores(len(texts))


def _scoring_setup(project: Project, admin: Any, make_examples: Any) -> tuple[ModelVersion, Any]:
    from annotator.models import Job
    from annotator.services.jobs import JobReporter, job_create

    model_promote(version=_version(project, 1, MEASURED), reason="first version")
    train_job = job_create(project=project, kind=Job.Kind.TRAIN, user=admin, params={})
    Job.objects.filter(pk=train_job.pk).update(status=Job.Status.RUNNING)
    candidate = _version(project, 2, TOO_FEW)
    ModelVersion.objects.filter(pk=candidate.pk).update(job=train_job)
    train_job.result = {"model_version": 2, "model_version_id": candidate.id, "promoted": None}
    Job.objects.filter(pk=train_job.pk).update(result=train_job.result)
    make_examples(project, admin, [{"external_id": f"pool-{i}", "text": f"unlabeled {i}"} for i in range(3)])
    return candidate, (train_job, JobReporter(train_job))


def test_a_scoring_failure_leaves_the_new_version_unpromoted(project, admin, make_examples, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    from annotator import tasks
    from annotator.models import Job
    from annotator.selectors.models import version_promotion
    from annotator.services import models, scoring

    candidate, (train_job, reporter) = _scoring_setup(project, admin, make_examples)
    for module in (scoring, models):
        monkeypatch.setattr(module, "predictor_for", lambda version: _Predictor(fail=True))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        scoring.start_scoring(train_job, candidate, reporter)
    assert len(sent) == 1  # one chunk to score
    score_job = Job.objects.get(parent=train_job, kind=Job.Kind.SCORE)

    with pytest.raises(RuntimeError):
        tasks.score_chunk(score_job.id, 0, score_job.params["chunk_ids"][0])

    assert _serving(project) == 1
    candidate.refresh_from_db()
    assert "decision" not in candidate.comparison
    assert Job.objects.get(pk=train_job.pk).status == Job.Status.FAILED
    assert version_promotion(candidate)["evidence"]["reason"].startswith("not decided: scoring did not finish")


def test_the_decision_comes_once_scoring_succeeded_and_before_the_queue_rebuild(project, admin, make_examples,
                                                                                 monkeypatch,
                                                                                 django_capture_on_commit_callbacks):
    from annotator.models import Job
    from annotator.services import models, scoring

    candidate, (train_job, reporter) = _scoring_setup(project, admin, make_examples)
    for module in (scoring, models):
        monkeypatch.setattr(module, "predictor_for", lambda version: _Predictor(fail=False))
    with django_capture_on_commit_callbacks(execute=False):
        scoring.start_scoring(train_job, candidate, reporter)
    score_job = Job.objects.get(parent=train_job, kind=Job.Kind.SCORE)
    assert _serving(project) == 1  # nothing decided while scoring

    with django_capture_on_commit_callbacks(execute=False) as sent:
        scoring.score_chunk(score_job.id, 0, score_job.params["chunk_ids"][0])

    assert _serving(project) == 2
    train_job.refresh_from_db()
    assert train_job.result["promoted"] is True and train_job.result["promotion"] == "promoted"
    assert len(sent) == 1  # the queue rebuild, sent once the decision is stored
