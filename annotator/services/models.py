"""Starting training, automatic retraining and promotion of model versions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotator.errors import Conflict, InvalidInput
from annotator.models import Annotation, Job, ModelVersion, Project
from annotator.project_settings import TRAIN_MODES
from annotator.services.jobs import job_create, job_dispatch


def training_start(
    *, project: Project, user: AbstractBaseUser | None, mode: Any = None, seeds: Any = None, reason: str = "requested"
) -> Job:
    """Queue a training job (enqueued after commit). Conflict names the job already queued or running."""
    mode = mode or project.setting("train_mode")
    if mode not in TRAIN_MODES:
        raise InvalidInput([{"field": "mode", "message": f"mode must be one of {', '.join(TRAIN_MODES)}"}])
    if seeds is None:
        seeds = 1
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 5:
        raise InvalidInput([{"field": "seeds", "message": "seeds must be an integer from 1 to 5"}])
    from annotator import tasks  # tasks import services; the import is here to keep layers one-way at load

    with transaction.atomic():
        job = job_create(project=project, kind=Job.Kind.TRAIN, user=user,
                         params={"mode": mode, "seeds": seeds, "reason": reason})
        job_dispatch(job, tasks.train_project, job.id)
    return job


def labels_since_last_training(project: Project) -> int:
    last = (
        ModelVersion.objects.filter(project=project).exclude(status=ModelVersion.Status.FAILED)
        .order_by("-number").values_list("snapshot", flat=True).first()
    )
    since = (last or {}).get("max_annotation_id", 0)
    return Annotation.objects.filter(example__project=project, id__gt=since).count()


def maybe_retrain(*, project: Project) -> Job | None:
    """Start a retrain once ``retrain_after_labels`` new annotations arrived since the last version."""
    threshold = int(project.setting("retrain_after_labels"))
    if threshold <= 0 or labels_since_last_training(project) < threshold:
        return None
    try:
        return training_start(project=project, user=None, reason=f"{threshold} new labels")
    except Conflict:
        return None  # one is already running; it or the next one will pick the new labels up


def model_promote(*, version: ModelVersion, reason: str) -> ModelVersion:
    """Make ``version`` the serving one: the automatic decision (services.pipeline.decide_promotion), a person
    promoting a candidate the rule rejected or left to them, or a rollback to an earlier version. Only
    finished versions can serve. Each promotion is appended to ``comparison["history"]`` with the version it
    replaced; the automatic decision and its evidence stay as they were recorded."""
    if version.status != ModelVersion.Status.READY:
        raise InvalidInput(f"version {version.number} is {version.status}; only a ready version can serve")
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=version.project_id)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        replaced = project.serving_version
        project.serving_version = version
        project.save(update_fields=["serving_version"])
        now = timezone.now()
        version.promoted_at = now
        entry: dict[str, Any] = {"reason": reason, "at": now.isoformat(),
                                 "replaced_version": replaced.number if replaced else None}
        if replaced is not None and replaced.number > version.number:
            entry["rollback"] = True
        version.comparison = {**version.comparison,
                              "history": [*version.comparison.get("history", []), entry]}
        version.save(update_fields=["promoted_at", "comparison"])
    version.project = project
    return version
