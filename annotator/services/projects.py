"""Projects, their label classes, settings and members; users and their API tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotator.errors import InvalidInput
from annotator.models import LabelClass, Membership, Project, Role, Task
from annotator.project_settings import effective_settings, stored_settings, validate_settings
from annotator.services.encoders import encoder_settings_check
from annotator.services.labels import MAX_LABELS, label_spec


def _validate_labels(labels: Any) -> list[dict[str, str]]:
    """Each label as a name or ``{"name", "description"?, "example"?}``; every problem is reported."""
    if not isinstance(labels, list) or not labels:
        raise InvalidInput([{"field": "labels", "message": "labels must be a non-empty list of names"}])
    if len(labels) > MAX_LABELS:
        raise InvalidInput([{"field": "labels", "message": f"at most {MAX_LABELS} labels"}])
    errors = []
    seen: set[str] = set()
    specs = []
    for i, value in enumerate(labels):
        try:
            spec = label_spec(value, index=i)
        except InvalidInput as error:
            errors.extend(error.errors)
            continue
        if spec["name"] in seen:
            errors.append({"index": i, "field": "labels", "message": f"duplicate label {spec['name']!r}"})
        seen.add(spec["name"])
        specs.append(spec)
    if errors:
        raise InvalidInput(errors)
    return specs


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
    specs = _validate_labels(labels)
    changes = validate_settings(settings if settings is not None else {})
    encoder_settings_check(before=effective_settings({}), after=effective_settings(stored_settings({}, changes)))
    with transaction.atomic():
        project = Project.objects.create(name=name.strip(), task=task, settings=stored_settings({}, changes),
                                         created_by=user)
        LabelClass.objects.bulk_create(
            LabelClass(project=project, position=i, **spec) for i, spec in enumerate(specs)
        )
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    return project


def project_update_settings(*, project: Project, settings: Any) -> Project:
    """Apply validated changes (all or nothing; a bad value is a 400 naming its field). The row keeps only
    values that differ from their default (annotator/project_settings.py). A change of encoder, pooling or
    max_length is checked against the encoder's directory first (services.encoders)."""
    stored = stored_settings(project.settings, validate_settings(settings))
    encoder_settings_check(before=effective_settings(project.settings), after=effective_settings(stored))
    project.settings = stored
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


def token_for(*, user: AbstractBaseUser) -> str:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def token_revoke(*, user: AbstractBaseUser) -> None:
    Token.objects.filter(user=user).delete()
