"""Drift windows of production samples and their alerts."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotator.models import DriftWindow, Project


def project_drift_windows(project: Project) -> QuerySet[DriftWindow]:
    """Every window of the project, newest first."""
    return DriftWindow.objects.filter(project=project).order_by("-sequence")


def drift_windows(project: Project, *, limit: int = 60) -> list[DriftWindow]:
    """The newest ``limit`` windows in arrival order (oldest first), for the plots."""
    windows = list(
        DriftWindow.objects.filter(project=project).defer("details").order_by("-sequence")[:limit]
    )
    return windows[::-1]


def drift_alerts(project: Project) -> QuerySet[DriftWindow]:
    return (
        DriftWindow.objects.filter(project=project, alert=True).select_related("model_version")
        .defer("details", "model_version__metrics", "model_version__config", "model_version__snapshot")
        .order_by("-sequence")
    )


def window_references(project: Project, window_ids: list[int]) -> dict[int, Any]:
    """Window id -> the reference record it stored (``details.reference``, None before windows recorded one),
    in one query: the page's window lists defer ``details``, which holds every test statistic."""
    return dict(DriftWindow.objects.filter(project=project, id__in=window_ids).values_list(
        "id", "details__reference"))
