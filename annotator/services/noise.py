"""Reviewer decisions on the noise report: keep a label, relabel, or send the example to the queue."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotator.errors import InvalidInput
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, Project, QueueItem
from annotator.services.annotations import label_map, refresh_current_labels, validate_labels
from annotator.services.models import maybe_retrain
from annotator.services.queue import queue_add

ACTIONS = ("keep", "relabel", "send_to_queue")
MAX_DECISIONS = 1000


def noise_decisions_apply(*, project: Project, user: AbstractBaseUser, rows: Any) -> dict[str, Any]:
    """Apply every decision or none. ``keep`` and ``relabel`` record a ``review`` annotation (which outranks
    other answers); ``send_to_queue`` queues the example with reason ``suspect``."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("the body must be a non-empty JSON list of decisions")
    if len(rows) > MAX_DECISIONS:
        raise InvalidInput(f"at most {MAX_DECISIONS} decisions per request")
    known = label_map(project)
    errors: list[dict[str, Any]] = []
    decisions: list[tuple[int, str, list[str] | None, str]] = []
    rows_of: dict[int, int] = {}  # example id -> the index of the row deciding on it
    seen: set[int] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append({"index": i, "message": "each decision must be an object"})
            continue
        example_id, action = row.get("example_id"), row.get("action")
        if not isinstance(example_id, int) or isinstance(example_id, bool):
            errors.append({"index": i, "field": "example_id", "message": "example_id must be an integer"})
            continue
        if example_id in seen:
            errors.append({"index": i, "field": "example_id", "message": "one decision per example"})
            continue
        seen.add(example_id)
        if action not in ACTIONS:
            errors.append({"index": i, "field": "action", "message": f"action must be one of {', '.join(ACTIONS)}"})
            continue
        labels = None
        if action == "relabel":
            key = "labels" if "labels" in row else "label"
            try:
                labels = validate_labels(row.get(key), task_multi=project.is_multi_label, known=known, field=key)
            except InvalidInput as error:
                errors.extend({**e, "index": i} for e in error.errors)
                continue
        note = row.get("note") or ""
        if not isinstance(note, str):
            errors.append({"index": i, "field": "note", "message": "note must be a string"})
            continue
        decisions.append((example_id, action, labels, note))
        rows_of[example_id] = i
    if not decisions:
        raise InvalidInput(errors)
    counts = dict.fromkeys(ACTIONS, 0)
    with transaction.atomic():
        # Lock the examples decided on (their rows, in id order so overlapping decisions cannot deadlock)
        # and read their current labels under the lock: a "keep" records the label current when it is
        # applied, not one that an answer committed in between has replaced.
        found = set(Example.objects.select_for_update().filter(project=project, id__in=list(rows_of))
                    .order_by("id").values_list("id", flat=True))
        errors.extend({"index": rows_of[example_id], "field": "example_id",
                       "message": f"no example {example_id} in this project"}
                      for example_id in rows_of if example_id not in found)
        if errors:
            raise InvalidInput(sorted(errors, key=lambda error: error["index"]))
        current: dict[int, list[str]] = {}
        for example_id, name in ExampleLabel.objects.filter(example_id__in=list(found)).order_by(
            "label__position"
        ).values_list("example_id", "label__name"):
            current.setdefault(example_id, []).append(name)
        annotations = []
        to_queue = []
        for example_id, action, labels, note in decisions:
            counts[action] += 1
            if action == "send_to_queue":
                to_queue.append(example_id)
                continue
            if action == "keep":
                labels = current.get(example_id)
                if not labels:
                    raise InvalidInput([{"index": rows_of[example_id], "field": "action",
                                         "message": f"example {example_id} has no label to keep"}])
            annotations.append(Annotation(example_id=example_id, user=user, kind=AnnotationKind.REVIEW,
                                          labels=labels, note=note or f"noise report: {action}"))
        Annotation.objects.bulk_create(annotations)
        refresh_current_labels([a.example_id for a in annotations], project=project)
        queued = queue_add(project=project, examples=to_queue, reason=QueueItem.Reason.SUSPECT, priority=2.0,
                           explanation="a reviewer sent this suspected label error from the noise report")
    maybe_retrain(project=project)  # review decisions are new labels too, from every interface that applies them
    return {"applied": len(decisions), "kept": counts["keep"], "relabeled": counts["relabel"],
            "sent_to_queue": counts["send_to_queue"], "queue_items_created": queued}
