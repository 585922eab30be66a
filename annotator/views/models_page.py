"""The models page (reviewer): versions with their metrics and shadow comparison, which one serves, the
learning curve, the stopping signal, a version's confusion matrix and reliability diagram, and promotion."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotator import loop_selectors, page_selectors, selectors
from annotator.errors import Forbidden, InvalidInput, NotFound
from annotator.models import ModelVersion, Project, Role
from annotator.services import models as model_services
from annotator.views import charts
from annotator.views.access import project_context, project_or_404, render_page


def _version_row(version: ModelVersion, project: Project) -> dict[str, Any]:
    metrics = version.metrics or {}
    slices = [
        {"name": name.removeprefix("source="), "macro_f1": values.get("macro_f1"), "n": values.get("n")}
        for name, values in sorted((metrics.get("slices") or {}).items())
    ]
    comparison = version.comparison or {}
    return {
        "version": version,
        "serving": project.serving_version_id == version.id,
        "macro_f1": metrics.get("macro_f1"),
        "macro_f1_std": metrics.get("macro_f1_std"),
        "seeds": (metrics.get("seeds") or {}).get("n") if isinstance(metrics.get("seeds"), dict) else None,
        "ece_before": metrics.get("ece_before"),
        "ece_after": metrics.get("ece"),
        "n_val": metrics.get("n_val"),
        "slices": slices,
        "comparison": comparison if "candidate_macro_f1" in comparison else None,
        "promotion": comparison.get("promotion"),
        "can_promote": version.status == ModelVersion.Status.READY and project.serving_version_id != version.id,
    }


def _selected(versions: list[ModelVersion], project: Project, wanted: str | None) -> ModelVersion | None:
    if wanted:
        for version in versions:
            if str(version.number) == wanted:
                return version
    ready = [v for v in versions if v.status == ModelVersion.Status.READY]
    serving = [v for v in ready if v.id == project.serving_version_id]
    return (serving or ready or versions or [None])[0]


def _stability_chart(versions: list[ModelVersion]) -> str | None:
    """Kappa of each version with the previous one, against the stopping threshold; None before any kappa."""
    points = page_selectors.stability_curve(versions)
    if not points:
        return None
    series = [charts.Series("kappa with the previous version",
                            [charts.Point(p["x"], p["y"], p["label"]) for p in points])]
    threshold = points[-1]["threshold"]
    if isinstance(threshold, int | float):
        xs = [p["x"] for p in points]
        series.append(charts.Series(f"stopping threshold ({threshold:g})",
                                    [charts.Point(x, threshold) for x in (min(xs), max(xs))], dashed=True))
    return charts.line_chart(
        series, title="Stopping signal: agreement of each version's predictions with the previous version's",
        x_label="version", y_label="Cohen's kappa", width=900, height=200, x_integer=True,
        # Kappa is at most 1; the axis starts low enough to show the threshold and the lowest kappa.
        y_range=(min(0.9, math.floor(min(p["y"] for p in points) * 10) / 10), 1.0),
    )


@login_required
@require_GET
def models(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    versions = page_selectors.model_versions(project)
    rows = [_version_row(v, project) for v in versions]
    selected = _selected(versions, project, request.GET.get("version"))
    names = selectors.project_labels(project)
    curve = page_selectors.learning_curve(versions)
    context = {
        **project_context(request, project, "models"),
        "rows": rows,
        "selected": _version_row(selected, project) if selected else None,
        "learning_curve": charts.line_chart(
            [charts.Series("macro-F1", [charts.Point(p["x"], p["y"], p["label"], p["std"]) for p in curve])],
            title="Learning curve: macro-F1 against training labels", x_label="training labels",
            y_label="macro-F1", y_range=(0.0, 1.0), empty="No trained version yet", width=900, height=240,
        ),
        "stopping": page_selectors.stopping_signal(project),
        "stability_chart": _stability_chart(versions),
    }
    if selected is not None:
        metrics = selected.metrics or {}
        calibration = metrics.get("calibration") or {}
        context.update(
            confusion=charts.heatmap(metrics.get("confusion_matrix"), names, names,
                                     title=f"Confusion matrix of v{selected.number} (validation split)"),
            reliability=charts.reliability_diagram(
                calibration.get("bins_before"), calibration.get("bins_after"),
                title=f"Reliability of v{selected.number}: before and after temperature scaling"),
            per_class=metrics.get("per_class") or [],
            temperature=metrics.get("temperature"),
        )
    return render_page(request, "models.html", context, partial="detail")


@login_required
@require_POST
def promote(request: HttpRequest, project_id: int, model_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    try:
        version = loop_selectors.model_version_for(request.user, model_id, role=Role.REVIEWER)
    except (NotFound, Forbidden):
        raise Http404("model version not found") from None
    if version.project_id != project.id:
        raise Http404("model version not found")
    try:
        model_services.model_promote(version=version, reason=f"promoted by {request.user.username}")
        messages.success(request, f"v{version.number} now serves predictions.")
    except InvalidInput as error:
        messages.error(request, error.errors[0]["message"])
    return redirect(reverse("models", args=[project.id]) + f"?version={version.number}")
