"""The models page (reviewer): versions with their holdout metrics and 95% intervals, the holdout's size and
sources, each promotion decision with its evidence, which one serves, the learning curve, the stopping signal,
a version's confusion matrix and reliability diagram, and promotion by hand (a rejected candidate, or a
rollback to an earlier version)."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotator.errors import Forbidden, InvalidInput, NotFound
from annotator.models import ModelVersion, Project, Role
from annotator.selectors import jobs as job_selectors
from annotator.selectors import models as model_selectors
from annotator.selectors import projects as project_selectors
from annotator.services import models as model_services
from annotator.services.holdout import HOLDOUT_MAX, HOLDOUT_MIN, HOLDOUT_MIN_PER_CLASS, HOLDOUT_SHARE
from annotator.services.models import PROMOTION_MARGIN
from annotator.views import charts
from annotator.views.access import project_context, project_or_404, render_page


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_interval(value: Any, interval: Any) -> str:
    """``0.842 [0.801–0.879]``: a figure with its 95% interval."""
    if value is None:
        return "—"
    if isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval:
        return f"{value:.3f} [{interval[0]:.3f}–{interval[1]:.3f}]"
    return f"{value:.3f}"


def _evidence_text(promotion: dict[str, Any]) -> str:
    """The promotion evidence in one sentence."""
    evidence = promotion.get("evidence") or {}
    if evidence.get("reason"):
        return str(evidence["reason"])
    if "difference_ci" in evidence:
        low, high = evidence["difference_ci"]
        worse = "shown worse" if evidence.get("shown_worse") else "not shown worse"
        return (f"vs v{evidence.get('against_version')} on {evidence.get('n')} held-out labels: macro-F1 "
                f"{_fmt(evidence.get('candidate_macro_f1'))} vs {_fmt(evidence.get('serving_macro_f1'))}, difference "
                f"{evidence.get('difference', 0):+.3f} [{low:+.3f}, {high:+.3f}] with margin "
                f"{evidence.get('margin', 0):g}: {worse}")
    if "candidate_macro_f1" in evidence:  # the shadow comparison of versions from before the holdout
        return (f"vs v{evidence.get('against_version')} on {evidence.get('n')} {evidence.get('on')} examples: "
                f"{_fmt(evidence.get('candidate_macro_f1'))} vs {_fmt(evidence.get('serving_macro_f1'))}")
    return ""


def _history_text(promotion: dict[str, Any]) -> list[str]:
    out = []
    for entry in promotion.get("history") or []:
        text = str(entry.get("reason", "promoted"))
        if entry.get("rollback"):
            text += f" (rolled back from v{entry.get('replaced_version')})"
        if entry.get("at"):
            text += f", {str(entry['at'])[:16].replace('T', ' ')}"
        out.append(text)
    return out


def _version_row(version: ModelVersion, project: Project, running_jobs: set[int]) -> dict[str, Any]:
    metrics = version.metrics or {}
    holdout = model_selectors.version_holdout(version)
    legacy = "holdout" not in metrics
    measured = metrics if legacy else holdout
    slices = [
        {"name": name.removeprefix("source="), "n": values.get("n"), "reason": values.get("reason"),
         "macro_f1": _with_interval(values.get("macro_f1"), values.get("macro_f1_ci"))}
        for name, values in sorted((measured.get("slices") or {}).items())
    ]
    promotion = model_selectors.version_promotion(version, running_jobs=running_jobs)
    serving = project.serving_version
    can_promote = version.status == ModelVersion.Status.READY and project.serving_version_id != version.id
    if not can_promote:
        promote_label = ""
    elif serving is not None and version.number < serving.number:
        promote_label = f"Roll back to v{version.number}"
    elif promotion.get("decision") in ("rejected", "manual"):
        promote_label = "Promote anyway" if promotion["decision"] == "rejected" else "Promote"
    else:
        promote_label = "Promote"
    return {
        "version": version,
        "serving": project.serving_version_id == version.id,
        "legacy": legacy,
        "holdout": holdout,
        "reason": None if legacy else holdout.get("reason"),
        "macro_f1": metrics.get("macro_f1"),
        "macro_f1_text": _with_interval(metrics.get("macro_f1"), metrics.get("macro_f1_ci")),
        "macro_f1_std": metrics.get("macro_f1_std"),
        "seeds": (metrics.get("seeds") or {}).get("n") if isinstance(metrics.get("seeds"), dict) else None,
        "ece_before": metrics.get("ece_before"),
        "ece_after": metrics.get("ece"),
        "ece_before_text": _with_interval(metrics.get("ece_before"), metrics.get("ece_before_ci")),
        "ece_after_text": _with_interval(metrics.get("ece"), metrics.get("ece_ci")),
        "n_val": metrics.get("n_val"),
        "n_holdout": holdout.get("n"),
        "sources": sorted((holdout.get("sources") or {}).items()),
        "slices": slices,
        "promotion": promotion,
        "decision": promotion.get("decision"),
        "evidence": _evidence_text(promotion),
        "history": _history_text(promotion),
        "can_promote": can_promote,
        "promote_label": promote_label,
        "encoder": model_selectors.version_encoder(version),
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
    points = model_selectors.stability_curve(versions)
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
    versions = model_selectors.model_versions(project)
    running = job_selectors.running_job_ids(project)
    rows = [_version_row(v, project, running) for v in versions]
    selected = _selected(versions, project, request.GET.get("version"))
    names = project_selectors.project_labels(project)
    curve = model_selectors.learning_curve(versions)
    context = {
        **project_context(request, project, "models"),
        "rows": rows,
        "selected": _version_row(selected, project, running) if selected else None,
        "learning_curve": charts.line_chart(
            [charts.Series("macro-F1", [charts.Point(p["x"], p["y"], p["label"], p["std"]) for p in curve])],
            title="Learning curve: macro-F1 against training labels", x_label="training labels",
            y_label="macro-F1", y_range=(0.0, 1.0), empty="No trained version yet", width=900, height=240,
        ),
        "stopping": model_selectors.stopping_signal(project),
        "stability_chart": _stability_chart(versions),
        "promotion_policy": project.setting("promotion"),
        "promotion_margin": f"{PROMOTION_MARGIN:g}",
        "holdout_share": f"{HOLDOUT_SHARE:.0%}",
        "holdout_max": f"{HOLDOUT_MAX:,}",
        "holdout_min": HOLDOUT_MIN,
        "holdout_min_per_class": HOLDOUT_MIN_PER_CLASS,
    }
    if selected is not None:
        metrics = selected.metrics or {}
        legacy = "holdout" not in metrics
        measured = metrics if legacy else metrics["holdout"]
        where = "validation split, before the stable holdout" if legacy else "holdout"
        calibration = measured.get("calibration") or {}
        context.update(
            confusion=charts.heatmap(measured.get("confusion_matrix"), names, names,
                                     title=f"Confusion matrix of v{selected.number} ({where})"),
            reliability=charts.reliability_diagram(
                calibration.get("bins_before"), calibration.get("bins_after"),
                title=f"Reliability of v{selected.number} ({where}): before and after temperature scaling"),
            per_class=[{**row, "f1_text": _with_interval(row.get("f1"), row.get("f1_ci")),
                        "precision_text": _with_interval(row.get("precision"), row.get("precision_ci")),
                        "recall_text": _with_interval(row.get("recall"), row.get("recall_ci"))}
                       for row in measured.get("per_class") or []],
            per_class_where=where,
            temperature=metrics.get("temperature"),
        )
    return render_page(request, "models.html", context, partial="detail")


@login_required
@require_POST
def promote(request: HttpRequest, project_id: int, model_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    try:
        version = model_selectors.model_version_for(request.user, model_id, role=Role.REVIEWER)
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
