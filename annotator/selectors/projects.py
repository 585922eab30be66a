"""A project's counts, label names and members."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from annotator.models import Annotation, Example, ExampleLabel, LabelClass, Membership, Project, QueueItem


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


def project_label_classes(project: Project) -> list[dict[str, Any]]:
    """Every label in position order with its description, example, whether it is retired and how many
    examples carry it now."""
    counts = dict(
        ExampleLabel.objects.filter(label__project=project).values("label_id").annotate(n=Count("example_id"))
        .values_list("label_id", "n")
    )
    return [
        {"id": label.id, "name": label.name, "position": label.position, "description": label.description,
         "example": label.example, "retired": label.retired, "examples": counts.get(label.id, 0)}
        for label in LabelClass.objects.filter(project=project).order_by("position")
    ]


def label_choices(project: Project) -> list[dict[str, Any]]:
    """The labels a new answer may choose (not retired), in position order, with what they mean."""
    return list(LabelClass.objects.filter(project=project, retired=False).order_by("position")
                .values("name", "description", "example"))


def project_members_detail(project: Project) -> list[dict[str, Any]]:
    """Members with their user id and email, by username (the members page)."""
    return [
        {"user_id": user_id, "username": username, "email": email, "role": role, "since": since}
        for user_id, username, email, role, since in Membership.objects.filter(project=project)
        .order_by("user__username")
        .values_list("user_id", "user__username", "user__email", "role", "created_at")
    ]
