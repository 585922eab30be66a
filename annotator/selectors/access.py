"""Who may see what: a non-member gets 404 for everything in a project, a member whose role is too low 403;
annotators reach only their queue work and their own annotations."""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Field, Q, QuerySet
from rest_framework.authtoken.models import Token

from annotator import db
from annotator.errors import Forbidden, NotFound
from annotator.models import Annotation, Example, Membership, Project, QueueItem, Role

ROLE_RANK = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}


def token_with_user(key: str) -> tuple[Any, Token] | None:
    """The API token with this key and its user, read in one statement (every API request authenticates:
    annotator/api/authentication.py), or None."""
    sql, token_fields, user_fields = _token_sql(connection.vendor)
    rows = db.fetch(sql, [key], (*token_fields, *user_fields))
    if not rows:
        return None
    token = db.instance(Token, token_fields, rows[0][:len(token_fields)])
    token.user = db.instance(get_user_model(), user_fields, rows[0][len(token_fields):])
    return token.user, token


@functools.cache
def _token_sql(vendor: str) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    user_model = get_user_model()
    token_fields, user_fields = db.fields_of(Token), db.fields_of(user_model)
    sql = (f"SELECT {db.columns('t', token_fields)}, {db.columns('u', user_fields)} FROM {db.table(Token)} t "
           f"JOIN {db.table(user_model)} u ON u.{user_model._meta.pk.column} = t.user_id WHERE t.key = %s")
    return sql, token_fields, user_fields


def role_of(user: AbstractBaseUser, project: Project) -> str | None:
    cached = getattr(project, "_role_cache", {})
    if user.pk in cached:
        return cached[user.pk]
    role = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    project._role_cache = {**cached, user.pk: role}  # type: ignore[attr-defined]
    return role


def project_for(user: AbstractBaseUser, project_id: Any, *, role: str = Role.ANNOTATOR) -> Project:
    """The project if ``user`` is a member with at least ``role``: 404 for non-members, 403 for a low role."""
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise NotFound("project not found") from None
    membership = (
        Membership.objects.select_related("project").filter(project_id=pk, user=user).first()
    )
    if membership is None:
        raise NotFound("project not found")
    project = membership.project
    project._role_cache = {user.pk: membership.role}  # type: ignore[attr-defined]
    require_role(user, project, role)
    return project


def require_role(user: AbstractBaseUser, project: Project, role: str) -> str:
    actual = role_of(user, project)
    if actual is None:
        raise NotFound("project not found")
    if ROLE_RANK[actual] < ROLE_RANK[role]:
        raise Forbidden(f"this needs the {role} role in the project; you are {actual}")
    return actual


def project_row_for(model: type, user: AbstractBaseUser, pk: Any, *, role: str, what: str) -> Any:
    """A row of a project the user belongs to: 404 for non-members (as for a missing row), 403 for a low role."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFound(f"{what} not found") from None
    obj = model.objects.select_related("project").filter(pk=pk).first()
    if obj is None or role_of(user, obj.project) is None:
        raise NotFound(f"{what} not found")
    require_role(user, obj.project, role)
    return obj


def example_for(user: AbstractBaseUser, example_id: Any) -> tuple[Example, str]:
    """The example and the caller's role; annotators only reach examples of their own queue work."""
    try:
        pk = int(example_id)
    except (TypeError, ValueError):
        raise NotFound("example not found") from None
    example = Example.objects.select_related("project").filter(pk=pk).first()
    if example is None:
        raise NotFound("example not found")
    role = role_of(user, example.project)
    if role is None:
        raise NotFound("example not found")
    if role == Role.ANNOTATOR and not _annotator_touches(user, example):
        raise NotFound("example not found")
    return example, role


def _annotator_touches(user: AbstractBaseUser, example: Example) -> bool:
    return (
        QueueItem.objects.filter(example=example).filter(Q(leased_by=user) | Q(done_by=user)).exists()
        or Annotation.objects.filter(example=example, user=user).exists()
    )


def projects_for(user: AbstractBaseUser) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).order_by("id")
