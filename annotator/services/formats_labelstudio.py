"""Label Studio JSON: tasks in, tasks out.

Import turns each task into one import row (so an error's ``index`` is the task's position in the list):
``data.text`` is the text, the task ``id`` the external id, ``meta`` the metadata (the task's other data
fields are kept in it under ``label_studio_data``), and every annotation with choices one entry of the
row's annotation history. Export writes tasks that Label
Studio imports with the labeling config of :func:`labeling_config`: one annotation per answer given here,
the serving version's prediction, and the example's metadata as ``meta``.

Label Studio stores who annotated as ``completed_by`` (a member id, or ``{"email": ...}`` in newer
exports) and refuses ids and emails it does not know, so the export leaves ``completed_by`` out (Label
Studio then records the importing user) and names the person, the annotation kind and note under the
``relabel`` key of each annotation, which Label Studio ignores and this import reads back; the example's
external id, source and observation time travel the same way under ``meta.relabel``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
from django.contrib.auth import get_user_model

from annotator.errors import InvalidInput
from annotator.models import AnnotationKind, LabelClass, Project
from annotator.selectors import export as export_selectors
from annotator.services.files import decode

FROM_NAME = "label"  # the <Choices name=...> of the labeling config
TO_NAME = "text"  # the <Text name=...> it labels
TEXT_KEY = "text"  # data.text
EXTRA_DATA = "label_studio_data"  # metadata key keeping a task's other data fields for the way back
OURS = "relabel"  # key of what only this product reads back (in meta and in each annotation)
MAX_ERRORS = 100


def labeling_config(project: Project) -> str:
    """The Label Studio labeling config that matches the export (text classification with Choices)."""
    names = list(LabelClass.objects.filter(project=project).order_by("position").values_list("name", flat=True))
    choice = "multiple" if project.is_multi_label else "single"
    options = "\n".join(f'    <Choice value="{_xml(name)}"/>' for name in names)
    return (f'<View>\n  <Text name="{TO_NAME}" value="${TEXT_KEY}"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="{choice}">\n{options}\n  </Choices>\n</View>\n')


def _xml(value: str) -> str:
    return (value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"))


# --- import ---------------------------------------------------------------------------------------------
def load_tasks(data: bytes) -> Any:
    """The JSON document of an uploaded Label Studio file (an InvalidInput naming the line when malformed)."""
    text = decode(data)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput([{"line": error.lineno, "field": "file",
                             "message": f"line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}); "
                                        "a Label Studio export is one JSON list of tasks"}]) from None
    except (ValueError, RecursionError) as error:
        raise InvalidInput([{"field": "file", "message": f"not valid JSON ({error or 'nested too deeply'})"}]) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({"index": index, "field": field, "message": f"task {index}: {message}"})


class _Choices:
    """Maps Label Studio choices to the project's labels: the exact name, else the one name that matches
    without regard to case."""

    def __init__(self, project: Project) -> None:
        self.names = list(LabelClass.objects.filter(project=project).order_by("position").values_list("name", flat=True))
        self.multi = project.is_multi_label
        folded: dict[str, list[str]] = {}
        for name in self.names:
            folded.setdefault(name.casefold(), []).append(name)
        self.by_fold = {key: names[0] for key, names in folded.items() if len(names) == 1}

    def name(self, choice: str) -> str | None:
        if choice in self.names:
            return choice
        return self.by_fold.get(choice.casefold())


class _People:
    """Who gave an annotation: our own export's ``relabel.user``, else Label Studio's ``completed_by``
    (an email matched to a user here, or a member id of that Label Studio), else the importer."""

    def __init__(self, tasks: list[Any], importer: str) -> None:
        self.importer = importer
        emails = {
            a["completed_by"]["email"].casefold()
            for t in tasks if isinstance(t, dict) and isinstance(t.get("annotations"), list)
            for a in t["annotations"]
            if isinstance(a, dict) and isinstance(a.get("completed_by"), dict)
            and isinstance(a["completed_by"].get("email"), str)
        }
        self.by_email: dict[str, str] = {}
        if emails:
            found: dict[str, list[str]] = {}
            for username, email in get_user_model().objects.filter(email__in=list(emails)).values_list(
                    "username", "email"):
                found.setdefault(email.casefold(), []).append(username)
            self.by_email = {email: names[0] for email, names in found.items() if len(names) == 1}

    def name(self, annotation: dict[str, Any], ours: dict[str, Any]) -> str | None:
        if isinstance(ours.get("user"), str) and ours["user"]:
            return ours["user"]
        who = annotation.get("completed_by")
        if isinstance(who, dict):
            email = who.get("email")
            if isinstance(email, str) and email:
                return self.by_email.get(email.casefold(), email)
            who = who.get("id")
        if isinstance(who, int) and not isinstance(who, bool):
            # Not a user name here, so the import records the importer with a note naming this one.
            return f"Label Studio user {who}"
        if isinstance(who, str) and who:
            return who
        return self.importer


def labelstudio_rows(project: Project, tasks: Any, *, importer: str, text_key: str = TEXT_KEY) -> list[dict[str, Any]]:
    """Import rows (see ``services.examples``) for a list of Label Studio tasks, one row per task;
    annotations that name nobody are the ``importer``'s.

    Raises InvalidInput naming the task index (from 0) and the field (``data.text``, ``annotations[1].result``,
    ...) of every problem; nothing is imported then.
    """
    if not isinstance(tasks, list):
        raise InvalidInput([{"field": "file", "message": "a Label Studio file must be a JSON list of tasks, "
                                                         f"not {_kind(tasks)}"}])
    if not tasks:
        raise InvalidInput([{"message": "the file has no tasks"}])
    choices = _Choices(project)
    people = _People(tasks, importer)
    errors = _Errors()
    rows: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        row = _task_row(index, task, text_key, choices, people, errors)
        rows.append(row or {})
    if errors.items:
        raise InvalidInput(errors.items)
    return rows


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null",
             bytes: "binary data"}
    return names.get(type(value), "a number")


def _task_row(index: int, task: Any, text_key: str, choices: _Choices, people: _People,
              errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(task, dict):
        errors.add(index, "task", f"each task must be a JSON object, not {_kind(task)}")
        return None
    if "data" not in task:
        errors.add(index, "data", "data is missing; a Label Studio task holds its text in data.text "
                   f"(the task has {', '.join(sorted(task)) or 'no fields'})")
        return None
    data = task["data"]
    if not isinstance(data, dict):
        errors.add(index, "data", f"data must be a JSON object, not {_kind(data)}")
        return None
    text = data.get(text_key)
    if not isinstance(text, str):
        found = "missing" if text_key not in data else f"{_kind(text)}, not a string"
        errors.add(index, f"data.{text_key}", f"data.{text_key} is {found}; the text to classify must be in "
                   f"data.{text_key} (other data fields: {', '.join(sorted(k for k in data if k != text_key)) or 'none'})")
        return None
    row: dict[str, Any] = {"text": text}
    meta = task.get("meta")
    if meta is not None and not isinstance(meta, dict):
        errors.add(index, "meta", f"meta must be a JSON object, not {_kind(meta)}")
        return None
    metadata = dict(meta or {})
    ours = metadata.pop(OURS, None)
    ours = ours if isinstance(ours, dict) else {}
    external_id = ours.get("external_id", task.get("id"))
    if external_id is not None:
        if isinstance(external_id, bool) or not isinstance(external_id, int | str):
            errors.add(index, "id", f"the task id must be an integer or a string, not {_kind(external_id)}")
            return None
        row["external_id"] = str(external_id)
    for key in ("source", "observed_at"):
        if ours.get(key) is not None:
            row[key] = ours[key]
    extra = {k: v for k, v in data.items() if k != text_key}
    if extra:
        metadata[EXTRA_DATA] = extra
    if metadata:
        row["metadata"] = metadata
    for key in ("predictions",):
        if task.get(key) is not None and not isinstance(task[key], list):
            errors.add(index, key, f"{key} must be a list, not {_kind(task[key])}")
            return None
    annotations = task.get("annotations", task.get("completions"))  # "completions": Label Studio before 1.0
    if annotations is None:
        return row
    if not isinstance(annotations, list):
        errors.add(index, "annotations", f"annotations must be a list, not {_kind(annotations)}")
        return None
    history = []
    for j, annotation in enumerate(annotations):
        entry = _history_entry(index, j, annotation, choices, people, errors)
        if entry is False:
            return None
        if entry is not None:
            history.append(entry)
    if history:
        row["annotations"] = history
    return row


def _history_entry(index: int, j: int, annotation: Any, choices: _Choices, people: _People,
                   errors: _Errors) -> dict[str, Any] | None | bool:
    """The history entry of one annotation; None for a cancelled or empty one; False after an error."""
    where = f"annotations[{j}]"
    if not isinstance(annotation, dict):
        errors.add(index, where, f"annotation {j} must be a JSON object, not {_kind(annotation)}")
        return False
    if annotation.get("was_cancelled") is True:
        return None  # skipped in Label Studio: no label to keep
    result = annotation.get("result", [])
    if not isinstance(result, list):
        errors.add(index, f"{where}.result", f"annotation {j}: result must be a list, not {_kind(result)}")
        return False
    names: list[str] = []
    for k, item in enumerate(result):
        field = f"{where}.result[{k}]"
        if not isinstance(item, dict):
            errors.add(index, field, f"annotation {j}, result {k} must be a JSON object")
            return False
        if item.get("type") != "choices":
            errors.add(index, f"{field}.type", f"annotation {j}, result {k}: type {item.get('type')!r} cannot be "
                       "imported; only choices (text classification) can")
            return False
        value = item.get("value")
        given = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            errors.add(index, f"{field}.value.choices", f"annotation {j}, result {k}: value.choices must be a "
                       "list of strings")
            return False
        for choice in given:
            name = choices.name(choice)
            if name is None:
                errors.add(index, f"{field}.value.choices", f"annotation {j}: unknown choice {choice!r}; the "
                           f"project's labels are {', '.join(choices.names)}")
                return False
            if name not in names:
                names.append(name)
    if not names:
        return None  # submitted without a choice: nothing to keep
    if len(names) > 1 and not choices.multi:
        errors.add(index, f"{where}.result", f"annotation {j} gives {len(names)} choices "
                   f"({', '.join(names)}) but this is a single-label project: one choice per annotation")
        return False
    ours = annotation.get(OURS) if isinstance(annotation.get(OURS), dict) else {}
    entry: dict[str, Any] = {"labels": names, "kind": ours.get("kind") or AnnotationKind.IMPORT,
                             "user": people.name(annotation, ours)}
    if annotation.get("created_at") is not None:
        entry["created_at"] = annotation["created_at"]
    if isinstance(ours.get("note"), str):
        entry["note"] = ours["note"]
    return entry


# Import rows name fields by our names; errors about them are named by where they are in the task.
FIELD_NAMES = {"text": "data.text", "external_id": "id", "metadata": "meta", "source": "meta.relabel.source",
               "observed_at": "meta.relabel.observed_at"}


def task_field(field: str) -> str:
    if field in FIELD_NAMES:
        return FIELD_NAMES[field]
    if field.startswith("annotations[") and field.endswith((".label", ".labels")):
        return field.rsplit(".", 1)[0] + ".result"
    return field


# --- export ---------------------------------------------------------------------------------------------
def labelstudio_export(project: Project) -> Iterator[bytes]:
    """The project as one JSON list of Label Studio tasks, streamed a chunk of examples at a time."""
    yield b"["
    first = True
    for chunk in export_selectors.export_row_chunks(project):
        predictions = export_selectors.serving_predictions(project, [row["id"] for row in chunk])
        parts = [orjson.dumps(_task(row, predictions.get(row["id"]))) for row in chunk]
        yield (b"\n" if first else b",\n") + b",\n".join(parts)
        first = False
    yield b"\n]\n"


def _result(names: list[str], ident: str) -> list[dict[str, Any]]:
    return [{"id": ident, "type": "choices", "from_name": FROM_NAME, "to_name": TO_NAME, "origin": "manual",
             "value": {"choices": names}}]


def _task(row: dict[str, Any], prediction: dict[str, Any] | None) -> dict[str, Any]:
    metadata = dict(row["metadata"] or {})
    extra = metadata.pop(EXTRA_DATA, None)
    data = {**(extra if isinstance(extra, dict) else {}), TEXT_KEY: row["text"]}
    ours = {"external_id": row["external_id"], "source": row["source"]}
    if row["observed_at"]:
        ours["observed_at"] = row["observed_at"]
    metadata[OURS] = ours
    annotations = [
        {"id": a["annotation_id"], "result": _result(a["labels"], f"a{a['annotation_id']}"),
         "created_at": a["created_at"], "updated_at": a["created_at"], "was_cancelled": False,
         "ground_truth": False, OURS: {"user": a["user"], "kind": a["kind"], "note": a["note"]}}
        for a in row["annotations"]
    ]
    predictions = []
    if prediction and prediction["labels"]:
        predictions.append({"model_version": prediction["model_version"], "score": prediction["confidence"],
                            "result": _result(prediction["labels"], f"p{row['id']}")})
    return {"id": row["id"], "data": data, "meta": metadata, "annotations": annotations, "predictions": predictions}
