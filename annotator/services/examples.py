"""Bulk import of examples: validate every row first, then write everything in one transaction.

The API, the file import command and the demo loader all call :func:`examples_import`. Validation is
plain Python over the whole batch (a serializer per row is ten times slower), and the writes are bulk
inserts, so the cost per row stays flat as a project grows.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotator.db import in_chunks, is_postgres
from annotator.errors import Conflict, InvalidInput
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, LabelClass, Project, Source
from annotator.services.annotations import refresh_current_labels
from annotator.services.bulk import JSONText, analyze_if_stale, insert_rows
from annotator.services.embeddings import embed_after_import
from annotator.text import unicode_problem

MAX_BATCH_ROWS = 10_000
MAX_EXTERNAL_ID = 255
MAX_SOURCE = 50
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 20
MAX_ERRORS = 100
EMPTY_METADATA = JSONText("{}")  # a broken file reports its first hundred problems, not a million
_SOURCE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ROW_KEYS = {"text", "external_id", "label", "labels", "source", "metadata", "observed_at", "annotations"}
# Export-only fields an exported file carries; import accepts and ignores them so a round trip works.
_IGNORED_KEYS = {"id", "label_source", "latest_score"}
_ALLOWED_KEYS = frozenset(_ROW_KEYS | _IGNORED_KEYS)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class HistoryEntry:
    username: str
    kind: str
    labels: list[str]
    created_at: datetime | None
    note: str = ""


@dataclass
class Row:
    index: int
    external_id: str
    text: str
    text_hash: str
    source: str
    metadata: JSONText
    observed_at: datetime | None
    labels: list[str] | None
    history: list[HistoryEntry] = field(default_factory=list)


@dataclass
class ImportResult:
    created: int
    unchanged: int
    updated: int
    ids: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "unchanged": self.unchanged, "updated": self.updated, "ids": self.ids}


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field_name: str | None, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            error: dict[str, Any] = {"index": index, "message": message}
            if field_name:
                error["field"] = field_name
            self.items.append(error)


def _json_depth(value: Any, depth: int = 0) -> int:
    if depth > MAX_METADATA_DEPTH:
        return depth
    if isinstance(value, dict):
        return max((_json_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_json_depth(v, depth + 1) for v in value), default=depth + 1)
    return depth


def _check_metadata(value: Any, index: int, errors: _Errors) -> JSONText | None:
    """The metadata as validated JSON text (written as is), or None after recording the problem."""
    if value is None:
        return EMPTY_METADATA
    if not isinstance(value, dict):
        errors.add(index, "metadata", "metadata must be a JSON object")
        return None
    try:
        dumped = orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, RecursionError):
        errors.add(index, "metadata", "metadata must be plain JSON with valid Unicode, nested at most "
                   f"{MAX_METADATA_DEPTH} levels")
        return None
    # Counting brackets is a cheap upper bound on the depth; walk the tree only when it could be too deep.
    if dumped.count("{") + dumped.count("[") > MAX_METADATA_DEPTH and _json_depth(value) > MAX_METADATA_DEPTH:
        errors.add(index, "metadata", f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        return None
    if len(dumped) > MAX_METADATA_BYTES:
        errors.add(index, "metadata", f"metadata is over {MAX_METADATA_BYTES // 1024} KB")
        return None
    if "\\u0000" in dumped:
        errors.add(index, "metadata", "metadata contains a NUL character")
        return None
    return JSONText(dumped)


def _parse_time(value: Any, index: int, field_name: str, errors: _Errors) -> datetime | None:
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        errors.add(index, field_name, f"{field_name} must be an ISO 8601 date and time")
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class _LabelChecker:
    def __init__(self, project: Project) -> None:
        self.multi = project.is_multi_label
        self.known = dict(LabelClass.objects.filter(project=project).values_list("name", "position"))

    def check(self, value: Any, index: int, field_name: str, errors: _Errors) -> list[str] | None:
        names = value if isinstance(value, list) else [value]
        if field_name == "label" and isinstance(value, list):
            errors.add(index, field_name, "label must be one name; use labels for a list")
            return None
        if not names:
            errors.add(index, field_name, "labels is an empty list; leave it out for an unlabeled row")
            return None
        if not self.multi and len(names) > 1:
            errors.add(index, field_name, "this is a single-label project: give exactly one label")
            return None
        out: list[str] = []
        for name in names:
            if not isinstance(name, str):
                errors.add(index, field_name, "a label must be given by its name (a string)")
                return None
            if name not in self.known:
                errors.add(index, field_name, f"unknown label {name!r}")
                return None
            if name not in out:
                out.append(name)
        return sorted(out, key=self.known.__getitem__)


def validate_rows(
    project: Project,
    rows: Any,
    *,
    default_source: str = Source.IMPORT,
    max_rows: int | None = MAX_BATCH_ROWS,
    allow_history: bool = False,
    line_numbers: list[int] | None = None,
) -> list[Row]:
    """Check every row; raise InvalidInput listing the problems (with row index or file line)."""
    if not isinstance(rows, list):
        raise InvalidInput([{"message": "the body must be a JSON list of rows"}])
    if not rows:
        raise InvalidInput([{"message": "no rows to import"}])
    if max_rows is not None and len(rows) > max_rows:
        raise InvalidInput([{"message": f"{len(rows)} rows in one request; at most {max_rows:,}"}])
    max_chars = int(project.setting("max_text_chars"))
    labels = _LabelChecker(project)
    errors = _Errors()
    out: list[Row] = []
    first_index_of: dict[str, int] = {}
    for i, raw in enumerate(rows):
        if not isinstance(raw, dict):
            errors.add(i, None, "each row must be a JSON object")
            continue
        if not raw.keys() <= _ALLOWED_KEYS:
            unknown = sorted(set(raw) - _ALLOWED_KEYS)
            errors.add(i, unknown[0], f"unknown field(s): {', '.join(unknown)}")
            continue
        text = raw.get("text")
        if not isinstance(text, str):
            errors.add(i, "text", "text is required and must be a string")
            continue
        if not text.strip():
            errors.add(i, "text", "text is empty")
            continue
        if len(text) > max_chars:
            errors.add(i, "text", f"text has {len(text):,} characters; the project's limit is {max_chars:,}")
            continue
        if "\x00" in text:
            errors.add(i, "text", "text contains a NUL character")
            continue
        try:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            errors.add(i, "text", "text is not valid Unicode (lone surrogate)")
            continue

        external_id = raw.get("external_id")
        if external_id is None:
            external_id = digest[:32]  # the same text pushed twice stays one example
        elif isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > MAX_EXTERNAL_ID:
            errors.add(i, "external_id", f"external_id must be a non-empty string of at most {MAX_EXTERNAL_ID} characters")
            continue
        if unicode_problem(external_id):
            errors.add(i, "external_id", "external_id contains a NUL character or invalid Unicode")
            continue
        if external_id in first_index_of:
            first = first_index_of[external_id]
            if raw.get("external_id") is not None or out[first].text != text:
                errors.add(i, "external_id", f"duplicate external_id {external_id!r} (also row {first})")
                continue

        source = raw.get("source", default_source)
        if source is None:
            source = default_source
        if not isinstance(source, str) or not source or len(source) > MAX_SOURCE or not _SOURCE_RE.match(source):
            errors.add(i, "source", f"source must be a short name of letters, digits, '_', '-', '.' (at most {MAX_SOURCE})")
            continue

        metadata = _check_metadata(raw.get("metadata"), i, errors)
        if metadata is None:
            continue
        observed_at = _parse_time(raw.get("observed_at"), i, "observed_at", errors)
        if raw.get("observed_at") is not None and observed_at is None:
            continue

        row_labels = None
        given = raw
        if "label" in raw and "labels" in raw:
            # An exported row carries both (label null in multi-label projects, labels [] when unlabeled):
            # accepted when they agree, so that an export imports back.
            if raw["label"] is None:
                given = {"labels": raw["labels"] or None}
            elif raw["labels"] == [raw["label"]]:
                given = {"label": raw["label"]}
            else:
                errors.add(i, "labels", "give either label or labels, not both")
                continue
        for key in ("label", "labels"):
            if given.get(key) is not None:
                row_labels = labels.check(given[key], i, key, errors)
                if row_labels is None:
                    break
        if (given.get("label") is not None or given.get("labels") is not None) and row_labels is None:
            continue

        history: list[HistoryEntry] = []
        if raw.get("annotations"):
            if not allow_history:
                errors.add(i, "annotations", "only a project admin may import annotation history")
                continue
            history = _check_history(raw["annotations"], i, labels, errors) or []
            if not history:
                continue

        if external_id not in first_index_of:
            first_index_of[external_id] = len(out)
            out.append(Row(i, external_id, text, digest, source, metadata, observed_at, row_labels, history))
    if errors.items:
        if line_numbers:
            for error in errors.items:
                error["line"] = line_numbers[error["index"]]
        raise InvalidInput(errors.items)
    return out


def _check_history(value: Any, index: int, labels: _LabelChecker, errors: _Errors) -> list[HistoryEntry] | None:
    if not isinstance(value, list):
        errors.add(index, "annotations", "annotations must be a list")
        return None
    entries = []
    for j, item in enumerate(value):
        where = f"annotations[{j}]"
        if not isinstance(item, dict) or not isinstance(item.get("user"), str):
            errors.add(index, where, "each annotation needs a user name")
            return None
        kind = item.get("kind", AnnotationKind.IMPORT)
        if kind not in AnnotationKind.values:
            errors.add(index, f"{where}.kind", f"kind must be one of {', '.join(AnnotationKind.values)}")
            return None
        key = "labels" if item.get("labels") is not None else "label"
        names = labels.check(item.get(key), index, f"{where}.{key}", errors)
        if names is None:
            return None
        created_at = _parse_time(item.get("created_at"), index, f"{where}.created_at", errors)
        if item.get("created_at") is not None and created_at is None:
            return None
        note = item.get("note") or ""
        note = note if isinstance(note, str) else ""
        for name, value in (("user", item["user"]), ("note", note)):
            problem = unicode_problem(value)
            if problem:
                errors.add(index, f"{where}.{name}", f"{name} {problem}")
                return None
        entries.append(HistoryEntry(item["user"], kind, names, created_at, note))
    return entries


def examples_import(
    *,
    project: Project,
    user: AbstractBaseUser,
    rows: Any,
    default_source: str = Source.IMPORT,
    max_rows: int | None = MAX_BATCH_ROWS,
    allow_history: bool = False,
    line_numbers: list[int] | None = None,
    embed: bool = True,
) -> ImportResult:
    """Import rows all-or-nothing; idempotent on ``external_id``. New examples are embedded in the
    background (services.embeddings) unless ``embed`` is false (a push embeds its samples as it predicts).

    A new row with a label records an ``import`` annotation by ``user``. A known ``external_id`` with the
    same text is ``unchanged`` (or ``updated`` when it brings a label that differs from its current one);
    a known ``external_id`` with another text is an error, since examples are immutable.
    """
    valid = validate_rows(
        project, rows, default_source=default_source, max_rows=max_rows,
        allow_history=allow_history, line_numbers=line_numbers,
    )
    analyze_if_stale(Example)
    try:
        ids_by_external, new_count, updated_ids = _write(project, user, valid, line_numbers, embed=embed)
    except IntegrityError:
        # Another import wrote one of these external ids between our check and our insert.
        raise Conflict("another import wrote some of these external_ids at the same moment; "
                       "send the request again (it is idempotent)") from None
    ids = [ids_by_external[r.external_id] for r in valid]
    if len(ids) != len(rows):
        # Repeated identical texts without external_id share one example; answer one id per row.
        by_hash = {r.text_hash: ids_by_external[r.external_id] for r in valid}
        ids = [by_hash[text_hash(row["text"])] for row in rows]
    return ImportResult(created=new_count, unchanged=len(valid) - new_count - len(updated_ids),
                        updated=len(updated_ids), ids=ids)


def _write(
    project: Project, user: AbstractBaseUser, valid: list[Row], line_numbers: list[int] | None, *, embed: bool
) -> tuple[dict[str, int], int, set[int]]:
    now = timezone.now()
    with transaction.atomic():
        existing = _existing(project, [r.external_id for r in valid])
        conflicts = [
            {"index": r.index, "field": "external_id",
             "message": f"external_id {r.external_id!r} already exists with a different text",
             **({"line": line_numbers[r.index]} if line_numbers else {})}
            for r in valid if r.external_id in existing and existing[r.external_id][1] != r.text_hash
        ]
        if conflicts:
            raise InvalidInput(conflicts[:MAX_ERRORS])
        new_rows = [r for r in valid if r.external_id not in existing]
        new_ids = insert_rows(
            Example,
            ["project_id", "external_id", "text", "text_hash", "source", "metadata", "observed_at", "created_at",
             "label_source"],
            [
                (project.id, r.external_id, r.text, r.text_hash, r.source, r.metadata,
                 r.observed_at or (now if r.source == Source.PRODUCTION else None), now,
                 AnnotationKind.IMPORT if r.labels and not r.history else "")
                for r in new_rows
            ],
        )
        if new_ids:
            Project.objects.filter(pk=project.pk).update(example_count=F("example_count") + len(new_ids))
            if embed:
                embed_after_import(project, list(new_ids))  # sent once this import commits
        ids_by_external = {ext: pk for ext, (pk, _) in existing.items()}
        ids_by_external.update({r.external_id: pk for r, pk in zip(new_rows, new_ids, strict=True)})
        updated_ids = _changed_labels([r for r in valid if r.external_id in existing], existing)
        annotations, links, to_refresh = _annotations_for(
            user, valid, ids_by_external, updated_ids=updated_ids, existing=existing, label_ids=label_ids(project),
        )
        insert_rows(Annotation, ["example_id", "user_id", "kind", "labels", "note", "created_at"],
                    [(*a[:5], a[5] or now) for a in annotations])
        insert_rows(ExampleLabel, ["example_id", "label_id"], links)
        refresh_current_labels(to_refresh, project=project)
    return ids_by_external, len(new_rows), updated_ids


def label_ids(project: Project) -> dict[str, int]:
    return dict(LabelClass.objects.filter(project=project).values_list("name", "id"))


def _existing(project: Project, external_ids: list[str]) -> dict[str, tuple[int, str]]:
    """(id, text_hash) of the project's examples with these external ids."""
    if is_postgres():
        # One array parameter instead of ten thousand IN placeholders.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT external_id, id, text_hash FROM annotator_example WHERE project_id = %s AND external_id = ANY(%s)",
                [project.id, external_ids],
            )
            return {ext: (pk, digest) for ext, pk, digest in cursor.fetchall()}
    found: dict[str, tuple[int, str]] = {}
    for chunk in in_chunks(external_ids):
        rows = Example.objects.filter(project=project, external_id__in=chunk).values_list("external_id", "id", "text_hash")
        found.update({ext: (pk, digest) for ext, pk, digest in rows})
    return found


def _changed_labels(rows: list[Row], existing: dict[str, tuple[int, str]]) -> set[int]:
    """Ids of existing examples whose row brings a label different from their current one."""
    labeled = [r for r in rows if r.labels is not None]
    if not labeled:
        return set()
    ids = [existing[r.external_id][0] for r in labeled]
    current: dict[int, list[str]] = defaultdict(list)
    for chunk in in_chunks(ids):
        for example_id, name in ExampleLabel.objects.filter(example_id__in=chunk).values_list("example_id", "label__name"):
            current[example_id].append(name)
    return {
        existing[r.external_id][0] for r in labeled
        if sorted(current.get(existing[r.external_id][0], [])) != sorted(r.labels or [])
    }


AnnotationRow = tuple[int, int, str, list[str], str, datetime | None]


def _annotations_for(
    user: AbstractBaseUser,
    rows: list[Row],
    ids_by_external: dict[str, int],
    *,
    updated_ids: set[int],
    existing: dict[str, tuple[int, str]],
    label_ids: dict[str, int],
) -> tuple[list[AnnotationRow], list[tuple[int, int]], list[int]]:
    """Annotation rows to insert, current-label links of plainly labeled new rows, and ids to re-derive."""
    users = _users_by_name({h.username for r in rows for h in r.history})
    annotations: list[AnnotationRow] = []
    links: list[tuple[int, int]] = []
    to_refresh: list[int] = []
    for r in rows:
        example_id = ids_by_external[r.external_id]
        is_new = r.external_id not in existing
        if is_new and r.history:
            for h in r.history:
                author = users.get(h.username)
                note = h.note if author else f"imported; originally by {h.username}. {h.note}".strip()
                annotations.append((example_id, (author or user).pk, h.kind, h.labels, note, h.created_at))
            to_refresh.append(example_id)
        elif is_new and r.labels:
            annotations.append((example_id, user.pk, AnnotationKind.IMPORT, r.labels, "", None))
            links.extend((example_id, label_ids[name]) for name in r.labels)
        elif example_id in updated_ids:
            annotations.append((example_id, user.pk, AnnotationKind.IMPORT, r.labels or [], "", None))
            to_refresh.append(example_id)
    return annotations, links, to_refresh


def _users_by_name(names: set[str]) -> dict[str, AbstractBaseUser]:
    if not names:
        return {}
    return {u.username: u for chunk in in_chunks(names) for u in get_user_model().objects.filter(username__in=chunk)}
