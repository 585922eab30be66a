"""Projects, their label classes, settings and members."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotator.errors import InvalidInput
from annotator.models import LabelClass, Membership, Project, Role, Task
from annotator.services.examples import unicode_problem
from training.modes import MODES as TRAIN_MODES

MAX_LABELS = 1000
MAX_LABEL_NAME = 100
QUEUE_REASONS = ("uncertain", "suspect", "drift", "random")
QUERY_STRATEGIES = ("entropy", "margin", "least_confidence", "random")
DRIFT_REFERENCES = ("pool", "production_baseline")
PROMOTION_POLICIES = ("auto", "manual")

PROJECT_SETTING_DEFAULTS: dict[str, Any] = {
    "max_text_chars": 20_000,
    "lease_seconds": 600,
    "drift_window_size": 200,
    # What production windows are compared with: the pool the version scored, or the first production window
    # it checked (services/drift_reference.py).
    "drift_reference": "pool",
    # How many annotators see each queued item (>1 measures agreement).
    "overlap": 1,
    # Retrain automatically after this many new labels; 0 turns it off.
    "retrain_after_labels": 0,
    "show_suggestions": True,
    "queue_size": 500,
    "queue_mix": {"uncertain": 0.6, "suspect": 0.25, "drift": 0.1, "random": 0.05},
    # How the uncertain share is ranked (training.query); entropy is still stored and shown for every item.
    "query_strategy": "entropy",
    # Spread each uncertain batch over embedding space (k-means over the top candidates).
    "diversity": True,
    "train_mode": "auto",
    # "auto": a new version serves unless a paired bootstrap on the holdout shows it worse than the serving one
    # (services.pipeline.decide_promotion); "manual": only people promote (the first version still serves).
    "promotion": "auto",
    "max_length": 256,
    "guidelines": "",
}

# name -> (type, min, max) for numbers; type only for others.
_INT_SETTINGS = {
    "max_text_chars": (1, 1_000_000),
    "lease_seconds": (10, 7 * 24 * 3600),
    "drift_window_size": (5, 100_000),
    "overlap": (1, 10),
    "retrain_after_labels": (0, 10_000_000),
    "queue_size": (0, 1_000_000),
    "max_length": (8, 8192),
}


def validate_project_settings(raw: Any, *, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings merged over ``base`` (or the defaults), or raise InvalidInput naming each field."""
    if not isinstance(raw, dict):
        raise InvalidInput([{"field": "settings", "message": "settings must be an object"}])
    merged = dict(base if base is not None else PROJECT_SETTING_DEFAULTS)
    errors: list[dict[str, Any]] = []
    for name, value in raw.items():
        field = f"settings.{name}"
        if name not in PROJECT_SETTING_DEFAULTS:
            known = ", ".join(sorted(PROJECT_SETTING_DEFAULTS))
            errors.append({"field": field, "message": f"unknown setting; known settings: {known}"})
        elif name in _INT_SETTINGS:
            low, high = _INT_SETTINGS[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors.append({"field": field, "message": f"must be an integer from {low} to {high}"})
        elif name in ("show_suggestions", "diversity"):
            if not isinstance(value, bool):
                errors.append({"field": field, "message": "must be true or false"})
        elif name == "train_mode":
            if value not in TRAIN_MODES:
                errors.append({"field": field, "message": f"must be one of {', '.join(TRAIN_MODES)}"})
        elif name == "query_strategy":
            if value not in QUERY_STRATEGIES:
                errors.append({"field": field, "message": f"must be one of {', '.join(QUERY_STRATEGIES)}"})
        elif name == "promotion":
            if value not in PROMOTION_POLICIES:
                errors.append({"field": field, "message": f"must be one of {', '.join(PROMOTION_POLICIES)}"})
        elif name == "drift_reference":
            if value not in DRIFT_REFERENCES:
                errors.append({"field": field, "message": f"must be one of {', '.join(DRIFT_REFERENCES)}"})
        elif name == "guidelines":
            if not isinstance(value, str) or len(value) > 50_000:
                errors.append({"field": field, "message": "must be a string of at most 50,000 characters"})
            elif unicode_problem(value):
                errors.append({"field": field, "message": "must not contain NUL characters or lone surrogates"})
        elif name == "queue_mix":
            errors.extend(_queue_mix_errors(value, field))
        if not any(e["field"] == field for e in errors):
            merged[name] = value
    if errors:
        raise InvalidInput(errors)
    return merged


def _queue_mix_errors(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not value:
        return [{"field": field, "message": f"must be an object of shares for {', '.join(QUEUE_REASONS)}"}]
    errors = []
    for reason, share in value.items():
        if reason not in QUEUE_REASONS:
            errors.append({"field": f"{field}.{reason}", "message": f"unknown reason; use {', '.join(QUEUE_REASONS)}"})
        elif (not isinstance(share, int | float) or isinstance(share, bool) or not math.isfinite(share)
              or not 0 <= share <= 1):
            errors.append({"field": f"{field}.{reason}", "message": "must be a number from 0 to 1"})
    if not errors and sum(value.values()) <= 0:
        errors.append({"field": field, "message": "at least one share must be above 0"})
    return errors


def _validate_labels(labels: Any) -> list[str]:
    if not isinstance(labels, list) or not labels:
        raise InvalidInput([{"field": "labels", "message": "labels must be a non-empty list of names"}])
    if len(labels) > MAX_LABELS:
        raise InvalidInput([{"field": "labels", "message": f"at most {MAX_LABELS} labels"}])
    errors = []
    seen: set[str] = set()
    names = []
    for i, name in enumerate(labels):
        if not isinstance(name, str) or not name.strip():
            errors.append({"index": i, "field": "labels", "message": "a label name must be a non-empty string"})
            continue
        name = name.strip()
        if len(name) > MAX_LABEL_NAME:
            errors.append({"index": i, "field": "labels", "message": f"at most {MAX_LABEL_NAME} characters"})
        elif name in seen:
            errors.append({"index": i, "field": "labels", "message": f"duplicate label {name!r}"})
        seen.add(name)
        names.append(name)
    if errors:
        raise InvalidInput(errors)
    return names


def project_create(
    *, user: AbstractBaseUser, name: Any, task: Any, labels: Any, settings: Any = None
) -> Project:
    errors = []
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append({"field": "name", "message": "name must be a non-empty string of at most 200 characters"})
    if task not in Task.values:
        errors.append({"field": "task", "message": f"task must be one of {', '.join(Task.values)}"})
    if errors:
        raise InvalidInput(errors)
    names = _validate_labels(labels)
    merged = validate_project_settings(settings if settings is not None else {})
    with transaction.atomic():
        project = Project.objects.create(name=name.strip(), task=task, settings=merged, created_by=user)
        LabelClass.objects.bulk_create(
            LabelClass(project=project, name=label, position=i) for i, label in enumerate(names)
        )
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    return project


def project_update_settings(*, project: Project, settings: Any) -> Project:
    project.settings = validate_project_settings(settings, base=project.settings)
    project.save(update_fields=["settings"])
    return project


def member_set(*, project: Project, username: Any, role: Any) -> Membership:
    """Add a member or change their role."""
    errors = []
    if not isinstance(username, str) or not username:
        errors.append({"field": "username", "message": "username must be a non-empty string"})
    if role not in Role.values:
        errors.append({"field": "role", "message": f"role must be one of {', '.join(Role.values)}"})
    if errors:
        raise InvalidInput(errors)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise InvalidInput([{"field": "username", "message": f"no user named {username!r}"}])
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if not created and membership.role != role:
            if membership.role == Role.ADMIN and role != Role.ADMIN:
                _ensure_another_admin(project, user)
            membership.role = role
            membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, username: str) -> None:
    membership = Membership.objects.filter(project=project, user__username=username).first()
    if membership is None:
        raise InvalidInput([{"field": "username", "message": f"{username!r} is not a member"}])
    with transaction.atomic():
        if membership.role == Role.ADMIN:
            _ensure_another_admin(project, membership.user)
        membership.delete()


def _ensure_another_admin(project: Project, user: AbstractBaseUser) -> None:
    others = Membership.objects.filter(project=project, role=Role.ADMIN).exclude(user=user)
    if not others.exists():
        raise InvalidInput([{"field": "role", "message": "a project keeps at least one admin"}])


def user_create(*, username: Any, password: Any, email: Any = "") -> AbstractBaseUser:
    errors = []
    if not isinstance(username, str) or not username.strip() or len(username) > 150:
        errors.append({"field": "username", "message": "username must be a non-empty string of at most 150 characters"})
    if not isinstance(password, str) or len(password) < 8:
        errors.append({"field": "password", "message": "password must be a string of at least 8 characters"})
    if email is None:
        email = ""
    if not isinstance(email, str):
        errors.append({"field": "email", "message": "email must be a string"})
    if errors:
        raise InvalidInput(errors)
    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise InvalidInput([{"field": "username", "message": f"a user named {username!r} already exists"}])
    return model.objects.create_user(username=username, password=password, email=email)
