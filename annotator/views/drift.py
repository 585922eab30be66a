"""The drift page (reviewer): per-window class mix, mean confidence, embedding drift and tokenization
anomalies of production traffic as plots, which reference the windows were compared with, and the alerts
with their reasons and what each triggered."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from annotator.models import DriftWindow, Project, Role
from annotator.selectors import drift as drift_selectors
from annotator.selectors import projects as project_selectors
from annotator.views import charts
from annotator.views.access import paginate, project_context, project_or_404, render_page

PLOTTED_WINDOWS = 60
ALERTS_PER_PAGE = 20
ANOMALY_SERIES = (
    ("texts_with_unk_share", "texts with unknown tokens"),
    ("truncation_rate", "truncated texts"),
    ("malformed_share", "malformed Unicode"),
)


def _series(windows: list[DriftWindow], name: str, value: Any) -> charts.Series:
    points = []
    for w in windows:
        y = value(w)
        if y is not None:
            points.append(charts.Point(w.sequence, float(y), label=f"window {w.sequence}"))
    return charts.Series(name, points)


def drift_plots(windows: list[DriftWindow], labels: list[str]) -> dict[str, Any]:
    names = list(labels) + sorted({k for w in windows for k in w.class_distribution} - set(labels))
    categories = [str(w.sequence) for w in windows]
    marks = [w.alert for w in windows]
    return {
        "class_mix": charts.stacked_bars(
            categories, {n: [w.class_distribution.get(n, 0.0) for w in windows] for n in names},
            title="Predicted class mix per window", x_label="window", marks=marks,
            empty="No drift window yet: windows are cut from production samples once a model serves",
        ),
        "confidence": charts.line_chart(
            [_series(windows, "mean confidence", lambda w: w.mean_confidence)],
            title="Mean confidence per window", x_label="window", y_label="mean confidence",
            y_range=(0.0, 1.0), empty="No drift window yet",
        ),
        "shift": charts.line_chart(
            [_series(windows, "class shift (JS distance)", lambda w: w.class_shift),
             _series(windows, "confidence shift (KS)", lambda w: w.confidence_shift),
             _series(windows, "embedding drift (MMD²)", lambda w: w.embedding_drift)],
            title="Shift statistics per window", x_label="window", y_label="statistic",
            empty="No drift window yet",
        ),
        "anomalies": charts.line_chart(
            [_series(windows, title, lambda w, key=key: (w.anomalies or {}).get(key)) for key, title in ANOMALY_SERIES],
            title="Tokenization anomalies per window", x_label="window", y_label="share of texts",
            y_percent=True, empty="No tokenization statistics yet",
        ),
    }


#: What windows measured before they recorded their reference were compared with.
LEGACY_REFERENCE = {"kind": "labeled_split",
                    "summary": "the labeled validation split (recorded before windows named their reference)"}
REFERENCE_KINDS = {"pool": "scored pool", "labeled_split": "labeled split", "production_baseline": "production baseline"}


def _references(project: Project, windows: list[Any]) -> dict[int, dict[str, Any]]:
    """Window id -> the reference it was compared with, in one query (the page's window lists defer
    ``details``, which holds every test statistic)."""
    rows = drift_selectors.window_references(project, [w.id for w in windows])
    return {pk: {**LEGACY_REFERENCE, **(record if isinstance(record, dict) else {})} for pk, record in rows.items()}


def reference_spans(windows: list[DriftWindow]) -> list[dict[str, Any]]:
    """Runs of consecutive windows (oldest first) compared with the same reference."""
    spans: list[dict[str, Any]] = []
    for w in windows:
        reference = getattr(w, "reference", LEGACY_REFERENCE)
        key = (reference.get("kind"), reference.get("model_version"), reference.get("summary"))
        if spans and spans[-1]["key"] == key:
            spans[-1]["last"] = w.sequence
            spans[-1]["n"] += 1
            continue
        spans.append({"key": key, "first": w.sequence, "last": w.sequence, "n": 1, "reference": reference,
                      "kind": REFERENCE_KINDS.get(str(reference.get("kind")), str(reference.get("kind")))})
    return spans


@login_required
@require_GET
def drift(request: HttpRequest, project_id: int) -> HttpResponse:
    from training.drift_signals import DriftConfig

    project = project_or_404(request, project_id, role=Role.REVIEWER)
    windows = drift_selectors.drift_windows(project, limit=PLOTTED_WINDOWS)
    alerts = paginate(request, drift_selectors.drift_alerts(project), ALERTS_PER_PAGE)
    references = _references(project, [*windows, *alerts])
    for w in [*windows, *alerts]:
        w.reference = references.get(w.id, LEGACY_REFERENCE)
        w.reference_kind = REFERENCE_KINDS.get(str(w.reference.get("kind")), str(w.reference.get("kind")))
    latest = windows[-1] if windows else None
    context = {
        **project_context(request, project, "drift"),
        **drift_plots(windows, project_selectors.project_labels(project)),
        "windows": windows,
        "latest": latest,
        "page": alerts,
        "window_size": project.setting("drift_window_size"),
        "reference_setting": project.setting("drift_reference"),
        "alpha": DriftConfig().alpha,
        "spans": reference_spans(windows),
        "plotted": PLOTTED_WINDOWS,
    }
    return render_page(request, "drift.html", context, partial="alerts")
