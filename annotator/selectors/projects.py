"""A project's counts, label names and members."""

from __future__ import annotations

from typing import Any

from annotator.models import Annotation, Example, LabelClass, Membership, Project, QueueItem


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
