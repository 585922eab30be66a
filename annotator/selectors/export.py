"""The streamed export of a project: every example with its current label(s) and full annotation history,
as JSONL (lossless) or CSV (JSON columns as text), a chunk at a time."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.db import connection

from annotator.csv_cells import csv_safe
from annotator.db import in_chunks
from annotator.models import Annotation, Example, ExampleLabel, ExampleScore, LabelClass, Project

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
    for chunk in export_row_chunks(project):
        for row in chunk:
            for entry in row["annotations"]:
                del entry["annotation_id"]
            yield row


def export_row_chunks(project: Project) -> Iterator[list[dict[str, Any]]]:
    """The rows of :func:`export_rows` in chunks of ``EXPORT_CHUNK``; history entries also carry their
    ``annotation_id``."""
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
            for annotation_id, example_id, username, kind, names, note, created_at in (
                Annotation.objects.filter(example_id__in=part)
                .order_by("id")
                .values_list("id", "example_id", "user__username", "kind", "labels", "note", "created_at")
            ):
                entry = {"annotation_id": annotation_id, "user": username, "kind": kind,
                         "label": None if multi else names[0], "labels": names, "note": note,
                         "created_at": created_at.isoformat()}
                history[example_id].append(entry)
        rows = []
        for example_id, external_id, text, source, label_source, metadata, observed_at in chunk:
            names = sorted(current.get(example_id, []), key=positions.__getitem__)
            rows.append({
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
            })
        yield rows


def serving_predictions(project: Project, example_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The serving version's prediction of these examples: ``{id: {"model_version", "labels",
    "confidence"}}``; empty when no version serves or it has not scored them."""
    version = project.serving_version
    if version is None:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for part in in_chunks(example_ids):
        for example_id, predicted, confidence in ExampleScore.objects.filter(
            model_version=version, example_id__in=part
        ).values_list("example_id", "predicted", "confidence"):
            out[example_id] = {"model_version": str(version), "labels": list(predicted), "confidence": confidence}
    return out


EXPORT_FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ["id", "external_id", "text", "source", "label", "labels", "label_source", "metadata",
               "observed_at", "annotations"]


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
