"""The queue as people see it: counts by status and reason, leased items with what an annotator may read, and
the caller's last answer (what undo re-opens)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count
from django.utils import timezone

from annotator.models import Annotation, Example, Job, Project, QueueItem

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
    examples = {e.id: e for e in Example.objects.filter(id__in=[i.example_id for i in items]).select_related(
        "latest_score")}
    out = []
    for item in items:
        example = examples[item.example_id]
        score = example.latest_score
        suggestion = None
        if show and score is not None:
            predicted = score.predicted or []
            suggestion = {"label": predicted[0] if predicted else None, "labels": predicted,
                          "confidence": round(score.confidence, 4)}
        out.append({
            "id": item.id,
            "example": {"id": example.id, "external_id": example.external_id, "text": example.text,
                        "source": example.source, "metadata": example.metadata},
            "reason": item.reason,
            "explanation": explanation_shown(item.explanation, show_suggestions=show),
            "priority": round(item.priority, 6),
            "suggestion": suggestion,
            "lease_expires_at": iso_time(item.lease_expires_at),
        })
    return out


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
