"""Read queries: who may see what, example lists, details and the export stream."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from annotator.errors import Forbidden, InvalidInput, NotFound
from annotator.models import (
    Annotation,
    Example,
    ExampleLabel,
    Job,
    LabelClass,
    Membership,
    Project,
    QueueItem,
    Role,
)
from annotator.services.bulk import in_chunks
from annotator.services.files import CSV_FORMULA

ROLE_RANK = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}


# --- access -------------------------------------------------------------------------------------------
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


# --- projects -----------------------------------------------------------------------------------------
def project_counts(project: Project) -> dict[str, int]:
    examples = Example.objects.filter(project=project)
    queue = QueueItem.objects.filter(project=project, status__in=[QueueItem.Status.PENDING, QueueItem.Status.LEASED])
    return {
        "examples": project.example_count,
        "labeled": examples.filter(label_source__gt="").count(),
        "production": examples.filter(source="production").count(),
        "queued": queue.count(),
        "annotations": Annotation.objects.filter(example__project=project).count(),
    }


def project_labels(project: Project) -> list[str]:
    return list(LabelClass.objects.filter(project=project).order_by("position").values_list("name", flat=True))


def project_members(project: Project) -> list[dict[str, Any]]:
    return [
        {"username": username, "role": role}
        for username, role in Membership.objects.filter(project=project)
        .order_by("user__username")
        .values_list("user__username", "role")
    ]


# --- examples -----------------------------------------------------------------------------------------
def _bool_param(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise InvalidInput([{"field": name, "message": f"{name} must be true or false"}])


def example_list(project: Project, *, params: dict[str, str]) -> QuerySet[Example]:
    """Examples of a project filtered by ``source``, ``labeled``, ``label`` and ``q`` (text search)."""
    qs = Example.objects.filter(project=project)
    if params.get("source"):
        qs = qs.filter(source=params["source"])
    if params.get("labeled"):
        if _bool_param(params["labeled"], "labeled"):
            qs = qs.exclude(label_source="")
        else:
            qs = qs.filter(label_source="")
    if params.get("label"):
        label = LabelClass.objects.filter(project=project, name=params["label"]).first()
        if label is None:
            raise InvalidInput([{"field": "label", "message": f"unknown label {params['label']!r}"}])
        qs = qs.filter(Exists(ExampleLabel.objects.filter(example=OuterRef("pk"), label=label)))
    if params.get("q"):
        q = params["q"].strip()
        if len(q) > 200:
            raise InvalidInput([{"field": "q", "message": "q is at most 200 characters"}])
        if q:
            qs = qs.filter(text__icontains=q)
    return qs.order_by("id")


def with_list_relations(qs: QuerySet[Example]) -> QuerySet[Example]:
    return qs.select_related("latest_score__model_version").prefetch_related(
        Prefetch("current_labels", queryset=ExampleLabel.objects.select_related("label").order_by("label__position"))
    )


def example_detail(example: Example, *, user: AbstractBaseUser, role: str) -> tuple[Example, list[Annotation]]:
    """The example and its annotation history (an annotator sees only their own annotations)."""
    history = Annotation.objects.filter(example=example).select_related("user").order_by("id")
    if role == Role.ANNOTATOR:
        history = history.filter(user=user)
    example = with_list_relations(Example.objects.filter(pk=example.pk)).get()
    return example, list(history)


# --- export -------------------------------------------------------------------------------------------
EXPORT_CHUNK = 2000

# PostgreSQL builds each export row itself (one pass, correlated index lookups), so a 100,000-row export
# streams in seconds without decoding and re-encoding JSON in Python.
_PG_EXPORT_COLUMNS = """
    e.id,
    e.external_id,
    e.text,
    e.source,
    COALESCE((SELECT json_agg(l.name ORDER BY l.position) FROM annotator_examplelabel el
              JOIN annotator_labelclass l ON l.id = el.label_id WHERE el.example_id = e.id), '[]'::json) AS labels,
    NULLIF(e.label_source, '') AS label_source,
    e.metadata::json AS metadata,
    e.observed_at,
    COALESCE((SELECT json_agg(json_build_object(
                'user', u.username, 'kind', a.kind,
                'label', CASE WHEN %(multi)s THEN NULL ELSE a.labels::json -> 0 END,
                'labels', a.labels::json, 'note', a.note, 'created_at', a.created_at) ORDER BY a.id)
              FROM annotator_annotation a JOIN auth_user u ON u.id = a.user_id
              WHERE a.example_id = e.id), '[]'::json) AS annotations
"""


def export_jsonl_pg(project: Project) -> Iterator[str]:
    """JSONL lines of the export, built by PostgreSQL and read through a server-side cursor."""
    sql = f"""
        SELECT json_build_object(
            'id', id, 'external_id', external_id, 'text', text, 'source', source,
            'label', CASE WHEN %(multi)s THEN NULL ELSE labels -> 0 END, 'labels', labels,
            'label_source', label_source, 'metadata', metadata, 'observed_at', observed_at,
            'annotations', annotations)::text
        FROM (SELECT {_PG_EXPORT_COLUMNS} FROM annotator_example e WHERE e.project_id = %(project)s) AS row
        ORDER BY id
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, {"multi": project.is_multi_label, "project": project.id})
        while rows := cursor.fetchmany(EXPORT_CHUNK):
            yield "".join(row[0] + "\n" for row in rows)


def export_table_pg(project: Project) -> Iterator[tuple[Any, ...]]:
    """Export rows as (id, external_id, text, source, labels, label_source, metadata, observed_at,
    annotations) with the JSON columns as text, for the CSV writer."""
    sql = f"""
        SELECT id, external_id, text, source, labels::text, label_source, metadata::text, observed_at,
               annotations::text
        FROM (SELECT {_PG_EXPORT_COLUMNS} FROM annotator_example e WHERE e.project_id = %(project)s) AS row
        ORDER BY id
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, {"multi": project.is_multi_label, "project": project.id})
        while rows := cursor.fetchmany(EXPORT_CHUNK):
            yield from rows


def export_rows(project: Project) -> Iterator[dict[str, Any]]:
    """Every example with its current label(s) and full history, in id order, a chunk at a time."""
    labels = dict(LabelClass.objects.filter(project=project).values_list("id", "name"))
    positions = dict(LabelClass.objects.filter(project=project).values_list("name", "position"))
    multi = project.is_multi_label
    last_id = 0
    base = Example.objects.filter(project=project).order_by("id")
    while True:
        chunk = list(
            base.filter(id__gt=last_id).values_list(
                "id", "external_id", "text", "source", "label_source", "metadata", "observed_at"
            )[:EXPORT_CHUNK]
        )
        if not chunk:
            return
        last_id = chunk[-1][0]
        ids = [row[0] for row in chunk]
        current: dict[int, list[str]] = defaultdict(list)
        history: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for part in in_chunks(ids):
            for example_id, label_id in ExampleLabel.objects.filter(example_id__in=part).values_list(
                "example_id", "label_id"
            ):
                current[example_id].append(labels[label_id])
            for example_id, username, kind, names, note, created_at in (
                Annotation.objects.filter(example_id__in=part)
                .order_by("id")
                .values_list("example_id", "user__username", "kind", "labels", "note", "created_at")
            ):
                entry = {"user": username, "kind": kind, "label": None if multi else names[0], "labels": names,
                         "note": note, "created_at": created_at.isoformat()}
                history[example_id].append(entry)
        for example_id, external_id, text, source, label_source, metadata, observed_at in chunk:
            names = sorted(current.get(example_id, []), key=positions.__getitem__)
            yield {
                "id": example_id,
                "external_id": external_id,
                "text": text,
                "source": source,
                "label": None if multi or not names else names[0],
                "labels": names,
                "label_source": label_source or None,
                "metadata": metadata,
                "observed_at": observed_at.isoformat() if observed_at else None,
                "annotations": history.get(example_id, []),
            }


# --- jobs ---------------------------------------------------------------------------------------------
def active_training_job(project: Project) -> Job | None:
    return (
        Job.objects.filter(project=project, kind=Job.Kind.TRAIN, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        .order_by("id")
        .first()
    )



EXPORT_FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ["id", "external_id", "text", "source", "label", "labels", "label_source", "metadata",
               "observed_at", "annotations"]


def csv_safe(value: str) -> str:
    """Spreadsheets run cells that start like a formula (= + - @ tab CR); a leading apostrophe keeps them
    text. Cells that are apostrophes then a formula start get one more, so that the import, which takes
    one off, reads back exactly what was exported."""
    return "'" + value if CSV_FORMULA.match(value) else value


class _Echo:
    def write(self, value: str) -> str:
        return value


def export_lines(project: Project, fmt: str) -> Iterator[str]:
    """The streamed export of a project: JSONL (lossless) or CSV (JSON columns as text)."""
    postgres = connection.vendor == "postgresql"
    if fmt == "jsonl":
        if postgres:
            yield from export_jsonl_pg(project)
            return
        buffer: list[str] = []
        for row in export_rows(project):
            buffer.append(json.dumps(row, ensure_ascii=False))
            if len(buffer) == EXPORT_CHUNK:
                yield "\n".join(buffer) + "\n"
                buffer = []
        if buffer:
            yield "\n".join(buffer) + "\n"
        return
    writer = csv.writer(_Echo())
    multi = project.is_multi_label
    yield writer.writerow(CSV_COLUMNS)
    if postgres:
        table = (
            (pk, ext, text, source, json.loads(labels), label_source or "", metadata,
             observed_at.isoformat() if observed_at else "", history)
            for pk, ext, text, source, labels, label_source, metadata, observed_at, history
            in export_table_pg(project)
        )
    else:
        table = (
            (r["id"], r["external_id"], r["text"], r["source"], r["labels"], r["label_source"] or "",
             json.dumps(r["metadata"], ensure_ascii=False), r["observed_at"] or "",
             json.dumps(r["annotations"], ensure_ascii=False))
            for r in export_rows(project)
        )
    for pk, ext, text, source, labels, label_source, metadata, observed_at, history in table:
        label = "" if multi or not labels else labels[0]
        yield writer.writerow([pk, csv_safe(ext), csv_safe(text), csv_safe(source), csv_safe(label),
                               csv_safe("|".join(labels)), label_source, metadata, observed_at, history])
