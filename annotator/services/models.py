"""Model versions: starting training, automatic retraining, the promotion decision and promotion.

``decide_promotion`` runs once a new version's pool is scored (services.scoring.finish_scoring): a paired
bootstrap on the version's holdout (the held-out examples and decisions services.evaluation kept beside its
artifact) against the serving version, under the project's ``promotion`` policy; ``model_promote`` makes a
version the serving one (that decision, a person, or a rollback).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotator import dispatch
from annotator.db import in_chunks
from annotator.errors import Conflict, InvalidInput
from annotator.models import Annotation, Example, Job, ModelVersion, Project
from annotator.project_settings import TRAIN_MODES
from annotator.selectors.projects import project_labels
from annotator.services.evaluation import HOLDOUT_FILE, label_matrix
from annotator.services.jobs import job_create
from annotator.services.jsonable import jsonable
from annotator.services.webhooks import version_promoted_event
from annotator.serving import predictor_for, version_dir

log = logging.getLogger(__name__)

# Promotion (project setting ``promotion`` "auto"): a candidate is rejected only when a paired bootstrap on the
# holdout shows it worse than the serving version by more than this much macro-F1 (training.metrics
# .paired_bootstrap: the upper end of the 95% interval of the difference is below -PROMOTION_MARGIN).
PROMOTION_MARGIN = 0.01


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
    with transaction.atomic():
        job = job_create(project=project, kind=Job.Kind.TRAIN, user=user,
                         params={"mode": mode, "seeds": seeds, "reason": reason})
        dispatch.send_job_after_commit(job, dispatch.TRAIN_PROJECT, job.id)
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
    """Make ``version`` the serving one: the automatic decision (decide_promotion), a person
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
        version_promoted_event(version, reason=reason, replaced=replaced)
    version.project = project
    return version


def decide_promotion(version: ModelVersion) -> dict[str, Any]:
    """Decide whether ``version`` replaces the serving version, store the decision with its evidence in
    ``version.comparison`` (``decision``, ``evidence``, ``policy``) and promote when it says so.

    - Nothing serves: ``first version``, promoted (also under ``manual``: predictions need a version).
    - ``promotion`` ``manual``: ``manual``, never promoted automatically; the evidence is still recorded.
    - ``auto``: ``rejected`` when a paired bootstrap on this version's holdout shows it worse than the serving
      version by more than ``PROMOTION_MARGIN`` macro-F1 (training.metrics.paired_bootstrap); otherwise
      ``promoted``. A comparison that cannot be made fairly (too few held-out labels, a serving version trained
      before the stable holdout, a serving artifact that fails to load) cannot show the candidate worse, so it
      is promoted, and the evidence says why there was no comparison.

    Called once every chunk is scored; a second call returns the stored decision."""
    version.refresh_from_db()
    if version.comparison.get("decision"):
        return {"decision": version.comparison["decision"], "evidence": version.comparison.get("evidence", {})}
    project = Project.objects.select_related("serving_version").get(pk=version.project_id)
    policy = project.setting("promotion")
    serving = project.serving_version
    if serving is None or serving.status != ModelVersion.Status.READY:
        decision = "first version"
        evidence: dict[str, Any] = {"reason": "no version served yet" + (
            "; promotion is manual, but the first version serves so that predictions work" if policy == "manual"
            else "")}
    else:
        evidence = _paired_evidence(version, serving)
        if policy == "manual":
            decision = "manual"
        else:
            decision = "rejected" if evidence.get("shown_worse") else "promoted"
    record = {"decision": decision, "evidence": jsonable(evidence), "policy": policy,
              "decided_at": timezone.now().isoformat()}
    ModelVersion.objects.filter(pk=version.pk).update(comparison={**version.comparison, **record})
    version.refresh_from_db()
    if decision in ("promoted", "first version"):
        against = evidence.get("against_version")
        model_promote(version=version, reason=(
            "first version" if decision == "first version"
            else f"promoted automatically: not shown worse than v{against}" if against
            else "promoted automatically"))
    return {"decision": decision, "evidence": record["evidence"]}


def _paired_evidence(version: ModelVersion, serving: ModelVersion) -> dict[str, Any]:
    """The paired comparison of ``version`` with ``serving`` on ``version``'s holdout, or why there is none."""
    from annotator.services.holdout import same_rule
    from training.metrics import paired_bootstrap

    base = {"against_version": serving.number, "on": "holdout", "margin": PROMOTION_MARGIN}
    holdout = (version.metrics or {}).get("holdout") or {}
    if holdout.get("reason"):
        return {**base, "n": holdout.get("n"), "reason": f"no comparison: {holdout['reason']}"}
    if not same_rule((serving.metrics or {}).get("holdout")):
        return {**base, "reason": f"no fair comparison: v{serving.number} was trained before the stable holdout "
                                  "and may have trained on these examples"}
    try:
        stored = json.loads((version_dir(version) / HOLDOUT_FILE).read_text())
    except (OSError, ValueError) as error:
        return {**base, "reason": f"no comparison: the held-out predictions of v{version.number} are unreadable "
                                  f"({error})"}
    names = project_labels(version.project)
    multi = version.project.is_multi_label
    texts = {pk: text for chunk in in_chunks(stored["example_ids"])
             for pk, text in Example.objects.filter(id__in=chunk).values_list("id", "text")}
    rows = [i for i, pk in enumerate(stored["example_ids"]) if pk in texts]
    try:
        prediction = predictor_for(serving).predict([texts[stored["example_ids"][i]] for i in rows],
                                                    with_token_stats=False)
    except Exception as error:  # noqa: BLE001 - a broken serving artifact must not block a new version
        log.warning("promotion: v%s failed to predict: %s", serving.number, error)
        return {**base, "reason": f"no comparison: v{serving.number} failed to predict ({error})"}
    y = label_matrix([stored["labels"][i] for i in rows], names, multi)
    candidate = label_matrix([stored["predicted"][i] for i in rows], names, multi)
    result = paired_bootstrap(y, candidate, prediction.predicted.astype(np.int64), names, margin=PROMOTION_MARGIN,
                              multi_label=multi)
    result["serving_macro_f1"] = result.pop("baseline_macro_f1")
    result["serving_macro_f1_ci"] = result.pop("baseline_macro_f1_ci")
    return {**base, **result}

