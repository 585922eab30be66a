"""A project's label classes after creation: add, rename, describe, retire and restore.

History is never lost. A label keeps its position for life (every model version's probabilities are in
position order), so a new label goes to the end and a retired one keeps its place: it stays in the
history, the exports and the models, but new answers cannot choose it (services.annotations.label_map).
Annotations record label *names*, so a rename rewrites the old name to the new one in the project's
annotations, scores and consensus in the same transaction: every answer stays, under the new name.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Max

from annotator.errors import InvalidInput
from annotator.models import Annotation, Example, ExampleScore, LabelClass, Project

MAX_LABELS = 1000
MAX_LABEL_NAME = 100
MAX_DESCRIPTION = 2000
MAX_EXAMPLE = 2000
REWRITE_BATCH = 2000


def label_spec(value: Any, *, index: int | None = None, field: str = "labels") -> dict[str, str]:
    """One label as given on create: a name, or ``{"name", "description"?, "example"?}``."""
    where = {"index": index} if index is not None else {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise InvalidInput([{**where, "field": field,
                             "message": "a label is a name or an object with name, description and example"}])
    unknown = set(value) - {"name", "description", "example"}
    if unknown:
        raise InvalidInput([{**where, "field": field, "message": f"unknown label field(s): {', '.join(sorted(unknown))}"}])
    name = label_name(value.get("name"), where=where, field=field)
    return {"name": name, "description": _text(value.get("description"), "description", MAX_DESCRIPTION, where),
            "example": _text(value.get("example"), "example", MAX_EXAMPLE, where)}


def label_name(value: Any, *, where: dict[str, Any] | None = None, field: str = "name") -> str:
    where = where or {}
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput([{**where, "field": field, "message": "a label name must be a non-empty string"}])
    name = value.strip()
    if len(name) > MAX_LABEL_NAME:
        raise InvalidInput([{**where, "field": field, "message": f"a label name has at most {MAX_LABEL_NAME} characters"}])
    return name


def _text(value: Any, field: str, limit: int, where: dict[str, Any]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput([{**where, "field": field, "message": f"{field} must be a string"}])
    value = value.replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise InvalidInput([{**where, "field": field, "message": f"{field} has at most {limit} characters"}])
    return value


def label_add(*, project: Project, name: Any, description: Any = "", example: Any = "") -> LabelClass:
    spec = label_spec({"name": name, "description": description, "example": example}, field="name")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one label change at a time
        labels = LabelClass.objects.filter(project=project)
        if labels.filter(name=spec["name"]).exists():
            raise InvalidInput([{"field": "name", "message": f"a label named {spec['name']!r} already exists"}])
        if labels.count() >= MAX_LABELS:
            raise InvalidInput([{"field": "name", "message": f"at most {MAX_LABELS} labels"}])
        position = (labels.aggregate(last=Max("position"))["last"] or 0) + 1 if labels.exists() else 0
        return LabelClass.objects.create(project=project, position=position, **spec)


def label_update(*, label: LabelClass, name: Any = None, description: Any = None, example: Any = None,
                 retired: Any = None) -> LabelClass:
    """Change what is given (None: unchanged). A new name rewrites the old one in the project's history."""
    if retired is not None and not isinstance(retired, bool):
        raise InvalidInput([{"field": "retired", "message": "retired must be true or false"}])
    new_name = label_name(name) if name is not None else label.name
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = _text(description, "description", MAX_DESCRIPTION, {})
    if example is not None:
        changes["example"] = _text(example, "example", MAX_EXAMPLE, {})
    if retired is not None:
        changes["retired"] = retired
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=label.project_id).first()
        label = LabelClass.objects.select_for_update().get(pk=label.pk)
        if retired is True and not label.retired and not LabelClass.objects.filter(
                project_id=label.project_id, retired=False).exclude(pk=label.pk).exists():
            raise InvalidInput([{"field": "retired", "message": "a project keeps at least one label that is not retired"}])
        if new_name != label.name:
            if LabelClass.objects.filter(project_id=label.project_id, name=new_name).exists():
                raise InvalidInput([{"field": "name", "message": f"a label named {new_name!r} already exists"}])
            _rename_in_history(label.project_id, label.name, new_name)
            changes["name"] = new_name
        for field, value in changes.items():
            setattr(label, field, value)
        if changes:
            label.save(update_fields=list(changes))
    return label


def _rename_in_history(project_id: int, old: str, new: str) -> None:
    """Every stored mention of the label's name in the project, old -> new (inside the caller's transaction)."""
    if connection.vendor == "postgresql":
        _rename_postgresql(project_id, old, new)
    else:
        _rename_rows(project_id, old, new)
    ExampleScore.objects.filter(example__project_id=project_id, suggested_label=old).update(suggested_label=new)


def _swap(names: Any, old: str, new: str) -> Any:
    return [new if name == old else name for name in names] if isinstance(names, list) else names


def _rename_postgresql(project_id: int, old: str, new: str) -> None:
    # One statement per table: a JSON array's elements are swapped in place, keeping their order.
    swap = ("(SELECT jsonb_agg(CASE WHEN v = to_jsonb(%s::text) THEN to_jsonb(%s::text) ELSE v END "
            "ORDER BY n) FROM jsonb_array_elements({col}) WITH ORDINALITY AS t(v, n))")
    examples = "SELECT id FROM annotator_example WHERE project_id = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE annotator_annotation SET labels = {swap.format(col='labels')} "
            f"WHERE example_id IN ({examples}) AND labels @> jsonb_build_array(%s::text)",
            [old, new, project_id, old])
        cursor.execute(
            f"UPDATE annotator_examplescore SET predicted = {swap.format(col='predicted')} "
            f"WHERE example_id IN ({examples}) AND predicted @> jsonb_build_array(%s::text)",
            [old, new, project_id, old])
        cursor.execute(
            "UPDATE annotator_example SET consensus = jsonb_set(consensus, '{labels}', "
            + swap.format(col="consensus->'labels'")
            + ") WHERE project_id = %s AND consensus IS NOT NULL AND consensus->'labels' @> jsonb_build_array(%s::text)",
            [old, new, project_id, old])


def _rename_rows(project_id: int, old: str, new: str) -> None:
    """The portable path (SQLite): rows whose JSON mentions the name, rewritten in batches."""
    for model, field, rows in (
        (Annotation, "labels", Annotation.objects.filter(example__project_id=project_id)),
        (ExampleScore, "predicted", ExampleScore.objects.filter(example__project_id=project_id)),
    ):
        batch = []
        for row in rows.only("id", field).iterator(chunk_size=REWRITE_BATCH):
            value = getattr(row, field)
            if isinstance(value, list) and old in value:
                setattr(row, field, _swap(value, old, new))
                batch.append(row)
            if len(batch) >= REWRITE_BATCH:
                model.objects.bulk_update(batch, [field])
                batch = []
        if batch:
            model.objects.bulk_update(batch, [field])
    changed = []
    for example in Example.objects.filter(project_id=project_id, consensus__isnull=False).only("id", "consensus"):
        labels = (example.consensus or {}).get("labels")
        if isinstance(labels, list) and old in labels:
            example.consensus = {**example.consensus, "labels": _swap(labels, old, new)}
            changed.append(example)
    Example.objects.bulk_update(changed, ["consensus"], batch_size=REWRITE_BATCH)


LABEL_EDIT_FIELDS = {"name", "new_name", "description", "example", "retired"}


def labels_edit(*, project: Project, edits: Any) -> None:
    """The API's label edits, all or nothing: ``[{"name", "new_name"?, "description"?, "example"?,
    "retired"?}]``; a name the project does not have yet adds that label. A bad row is a 400 naming its
    index, and nothing is changed."""
    if not isinstance(edits, list) or not edits:
        raise InvalidInput([{"field": "labels", "message": "labels must be a non-empty list of label edits"}])
    if len(edits) > MAX_LABELS:
        raise InvalidInput([{"field": "labels", "message": f"at most {MAX_LABELS} label edits"}])
    with transaction.atomic():
        for i, edit in enumerate(edits):
            try:
                _edit_one(project, edit)
            except InvalidInput as error:
                raise InvalidInput([{"index": i, **{"field": "labels", **e}} for e in error.errors]) from None
    project.__dict__.pop("_label_map", None)
    project.__dict__.pop("_every_label_map", None)


def _edit_one(project: Project, edit: Any) -> None:
    if not isinstance(edit, dict):
        raise InvalidInput([{"message": "each label edit must be an object with a name"}])
    unknown = set(edit) - LABEL_EDIT_FIELDS
    if unknown:
        raise InvalidInput([{"message": f"unknown label field(s): {', '.join(sorted(unknown))}"}])
    name = label_name(edit.get("name"))
    label = LabelClass.objects.filter(project=project, name=name).first()
    if label is None:
        if edit.get("new_name") is not None or edit.get("retired"):
            raise InvalidInput([{"field": "name", "message": f"no label named {name!r} to rename or retire"}])
        label_add(project=project, name=name, description=edit.get("description") or "",
                  example=edit.get("example") or "")
        return
    label_update(label=label, name=edit.get("new_name"), description=edit.get("description"),
                 example=edit.get("example"), retired=edit.get("retired"))
