"""Model versions: lookups and lists, each version's measurement on the stable holdout and its promotion
decision as stored records read them, the learning and stability curves, and the stopping signal."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from annotator.models import ModelVersion, Project, Role
from annotator.selectors.access import project_row_for
from annotator.selectors.jobs import running_job_ids


def model_version_for(user: AbstractBaseUser, model_id: Any, *, role: str = Role.REVIEWER) -> ModelVersion:
    return project_row_for(ModelVersion, user, model_id, role=role, what="model version")


def project_model_versions(project: Project) -> QuerySet[ModelVersion]:
    """Every version of the project, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_versions(project: Project) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(project=project).defer("snapshot").order_by("-number"))


def learning_curve(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Macro-F1 against the number of training labels, one point per ready version, oldest first."""
    points = []
    for version in sorted(versions, key=lambda v: v.number):
        metrics = version.metrics or {}
        f1 = metrics.get("macro_f1")
        if version.status != ModelVersion.Status.READY or f1 is None:
            continue
        points.append({"x": version.n_train, "y": f1, "std": metrics.get("macro_f1_std"), "label": f"v{version.number}"})
    return points


def version_encoder(version: ModelVersion) -> dict[str, Any] | None:
    """The encoder the version was trained from (services.training): the operator's name for it, the fingerprint
    of its base weights plus preprocessing (the embedding cache's key; None until the version is ready), its
    figures, pooling and max_length. A version from before the encoder setting is named by matching its
    directory against the operator's list; None when the version records no encoder at all."""
    encoder = (version.config or {}).get("encoder")
    if not isinstance(encoder, dict):
        return None
    name = encoder.get("name")
    if name is None:
        name = next((n for n, d in settings.ENCODERS.items() if d == encoder.get("model_dir")), None)
    return {"name": name, "fingerprint": encoder.get("fingerprint"), "model_type": encoder.get("model_type"),
            "hidden_size": encoder.get("hidden_size"), "parameters": encoder.get("parameters"),
            "pooling": encoder.get("pooling"), "max_length": encoder.get("max_length")}


LEGACY_HOLDOUT = "trained before the stable holdout: measured on its validation split only, so not comparable"


def version_holdout(version: ModelVersion) -> dict[str, Any]:
    """The version's held-out measurement (services.holdout, services.evaluation.measure_holdout), or why there
    is none."""
    holdout = (version.metrics or {}).get("holdout")
    if holdout is not None:
        return holdout
    if version.status != ModelVersion.Status.READY:
        return {"n": None, "reason": f"not measured: the version is {version.status}"}
    return {"n": None, "reason": LEGACY_HOLDOUT}


def version_promotion(version: ModelVersion, *, running_jobs: set[int] | None = None) -> dict[str, Any]:
    """The promotion decision with its evidence (services.models.decide_promotion) and every promotion of
    the version since (by hand, rollbacks); ``decision`` is None while or when none was made."""
    comparison = version.comparison or {}
    history = list(comparison.get("history") or [])
    if not history and isinstance(comparison.get("promotion"), str):  # versions from before the history
        history = [{"reason": comparison["promotion"]}]
    if comparison.get("decision"):
        return {"decision": comparison["decision"], "evidence": comparison.get("evidence") or {},
                "policy": comparison.get("policy"), "decided_at": comparison.get("decided_at"), "history": history}
    if "candidate_macro_f1" in comparison:  # the shadow comparison of versions from before the holdout
        evidence = {k: v for k, v in comparison.items() if k not in ("history", "promotion")}
        return {"decision": "promoted" if comparison.get("promoted") else "rejected", "evidence": evidence,
                "policy": "auto", "decided_at": None, "history": history}
    if comparison.get("promotion") == "first version":
        return {"decision": "first version", "evidence": {"reason": "no version served yet"}, "policy": "auto",
                "decided_at": None, "history": history}
    if version.status == ModelVersion.Status.TRAINING:
        reason = "not decided yet: the version is still training"
    elif version.status == ModelVersion.Status.FAILED:
        reason = "not decided: the version failed"
    elif version.job_id and version.job_id in (running_jobs if running_jobs is not None
                                               else running_job_ids(version.project)):
        reason = "not decided yet: promotion waits until scoring succeeded"
    else:
        reason = "not decided: scoring did not finish (failed or cancelled); it can be promoted by hand"
    return {"decision": None, "evidence": {"reason": reason}, "policy": None, "decided_at": None,
            "history": history}


def stopping_signal(project: Project) -> dict[str, Any] | None:
    """The newest ready version's stopping signal (``ModelVersion.stability``, written by
    ``services.stability``) with ``version`` added, or None while no version has one."""
    row = (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY, stability__has_key="message")
        .order_by("-number").values_list("number", "stability").first()
    )
    if row is None:
        return None
    number, stability = row
    return {**stability, "version": number}


def stability_curve(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Kappa of each ready version with the previous one, oldest first (versions without one are left out)."""
    points = []
    for version in sorted(versions, key=lambda v: v.number):
        kappa = (version.stability or {}).get("kappa")
        if version.status != ModelVersion.Status.READY or not isinstance(kappa, int | float):
            continue
        points.append({"x": version.number, "y": float(kappa), "threshold": version.stability.get("threshold"),
                       "label": f"v{version.number} vs v{version.stability.get('against_version')}"})
    return points
