"""The queue as people see it: counts by status and reason, leased items with what an annotator may read, and
the caller's last answer (what undo re-opens)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count
from django.utils import timezone

from annotator import db
from annotator.models import Annotation, Example, ExampleScore, Job, Project, QueueItem

# How a suspect item's explanation ends (``services.queue_policy`` writes it): naming the suggested label, or
# not while suggestions are hidden.
SUGGESTS = "; the model suggests "
DOUBTS = "; the detector doubts this label"


def iso_time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def queue_stats(project: Project) -> dict[str, Any]:
    now = timezone.now()
    rows = (
        QueueItem.objects.filter(project=project)
        .values_list("status", "reason")
        .annotate(n=Count("id"))
    )
    by_status = dict.fromkeys(["pending", "leased", "done"], 0)
    by_reason: dict[str, int] = {}
    for status, reason, n in rows:
        if status in by_status:
            by_status[status] += n
        if status in (QueueItem.Status.PENDING, QueueItem.Status.LEASED):
            by_reason[reason] = by_reason.get(reason, 0) + n
    expired = QueueItem.objects.filter(
        project=project, status=QueueItem.Status.LEASED, lease_expires_at__lt=now
    ).count()
    by_status["pending"] += expired
    by_status["leased"] -= expired
    rebuilt = (
        Job.objects.filter(project=project, kind=Job.Kind.QUEUE_REBUILD, status=Job.Status.SUCCEEDED)
        .order_by("-finished_at").values_list("finished_at", flat=True).first()
    )
    serving = project.serving_version
    state = project.queue_state or {}
    return {**by_status, "by_reason": by_reason, "model_version": serving.number if serving else None,
            "rebuilt_at": iso_time(rebuilt), "mix": state.get("mix") or project.setting("queue_mix"),
            "strategy": state.get("strategy", project.setting("query_strategy")),
            "cold_start": state.get("cold_start", False),
            "held_back_for_holdout": state.get("held_back_for_holdout", 0)}


def explanation_shown(explanation: str, *, show_suggestions: bool) -> str:
    """A queue item's explanation as an annotator may read it now: a suspect item's names the suggested label
    only while the project shows suggestions (the explanation was written when the queue was built, and the
    setting may have been turned off since)."""
    if show_suggestions or SUGGESTS not in explanation:
        return explanation
    return explanation[: explanation.index(SUGGESTS)] + DOUBTS


def queue_items_shown(project: Project, items: list[QueueItem]) -> list[dict[str, Any]]:
    """Leased items as an annotator sees them, in the API and on the annotate page: the example, the reason,
    the explanation, and the model's suggestion while the project shows suggestions."""
    if not items:
        return []
    show = bool(project.setting("show_suggestions"))
    rows = db.fetch(
        f"SELECT {db.columns('e', _SHOWN_EXAMPLE)}, {db.columns('s', _SHOWN_SCORE)} FROM {db.table(Example)} e "
        f"LEFT JOIN {db.table(ExampleScore)} s ON s.id = e.latest_score_id "
        f"WHERE e.id IN ({', '.join(['%s'] * len(items))})",
        [item.example_id for item in items], (*_SHOWN_EXAMPLE, *_SHOWN_SCORE))
    examples = {row[0]: row for row in rows}
    out = []
    for item in items:
        example_id, external_id, text, source, metadata, score_id, predicted, confidence = examples[item.example_id]
        suggestion = None
        if show and score_id is not None:
            predicted = predicted or []
            suggestion = {"label": predicted[0] if predicted else None, "labels": predicted,
                          "confidence": round(confidence, 4)}
        out.append({
            "id": item.id,
            "example": {"id": example_id, "external_id": external_id, "text": text, "source": source,
                        "metadata": metadata},
            "reason": item.reason,
            "explanation": explanation_shown(item.explanation, show_suggestions=show),
            "priority": round(item.priority, 6),
            "suggestion": suggestion,
            "lease_expires_at": iso_time(item.lease_expires_at),
        })
    return out


# What an annotator may read of a leased item's example, and the suggestion from its latest score (one
# statement per lease: the click path, annotator/db.py).
_SHOWN_EXAMPLE = db.fields_of(Example, "id", "external_id", "text", "source", "metadata")
_SHOWN_SCORE = db.fields_of(ExampleScore, "id", "predicted", "confidence")


def queue_item_in_project(project: Project, item_id: int) -> bool:
    return QueueItem.objects.filter(pk=item_id, project=project).exists()


def last_queue_answer(user: AbstractBaseUser, project: Project) -> Annotation | None:
    """The caller's newest answer to a queue item of this project (what undo re-opens)."""
    return (
        Annotation.objects.filter(user=user, queue_item__project=project)
        .select_related("example", "queue_item")
        .order_by("-id")
        .first()
    )


def answer_of(user: AbstractBaseUser, project: Project, annotation_id: int) -> Annotation | None:
    return (
        Annotation.objects.filter(pk=annotation_id, user=user, queue_item__project=project)
        .select_related("example", "queue_item")
        .first()
    )


def queue_depth() -> list[tuple[str, str, int]]:
    """Open queue work of every project as (reason, status, count), pending and leased, in one grouped query
    (the ``/metrics`` scrape)."""
    rows = (
        QueueItem.objects.filter(status__in=[QueueItem.Status.PENDING, QueueItem.Status.LEASED])
        .values_list("reason", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(reason, status, n) for reason, status, n in rows]
