"""The review pages (reviewer and admin): the noise report with keep / relabel / send-to-queue decisions,
one by one or in bulk, the agreement of annotators on items several of them answered, conflicting
near-duplicates (settled a group at a time), and outliers with class health."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotator.errors import InvalidInput
from annotator.models import Project, Role
from annotator.selectors import consensus as consensus_selectors
from annotator.selectors import health as health_selectors
from annotator.selectors import noise as noise_selectors
from annotator.selectors import projects as project_selectors
from annotator.services import health as health_services
from annotator.services import noise as noise_services
from annotator.views import charts
from annotator.views.access import (
    UNPROCESSABLE,
    paginate,
    project_context,
    project_or_404,
    render_page,
    wants_partial,
)

ISSUES_PER_PAGE = 50
AGREEMENT_PER_PAGE = 25


def _report_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    labels = project_selectors.project_labels(project)
    label = request.GET.get("label") or request.POST.get("filter_label") or ""
    if label not in labels:
        label = ""
    header, issues = noise_selectors.noise_report(project, label=label or None)
    page = paginate(request, issues, ISSUES_PER_PAGE)
    per_class = header.get("per_class") or []
    rate = header.get("estimated_noise_rate")
    return {
        "noise_percent": None if rate is None else rate * 100,
        "label_query": urlencode({"label": label}) + "&" if label else "",
        "report": header,
        "labels": labels,  # the filter: every label, retired ones included
        "choosable": [c["name"] for c in project_selectors.label_choices(project)],  # relabel: not retired
        "label": label,
        "page": page,
        "rows": noise_selectors.noise_issue_rows(project, list(page.object_list), with_labelers=True),
        "settled_rows": noise_selectors.settled_flags(project),
        "per_class_chart": charts.bar_chart(
            [row["label"] for row in per_class], [row.get("estimated_noise_rate") for row in per_class],
            title="Estimated noise rate per class", empty="No noise estimate yet",
        ),
    }



def _nothing_saved(request: HttpRequest, error: InvalidInput) -> int:
    for problem in error.errors[:5]:
        messages.error(request, f"Nothing was saved: {problem['message']}")
    return UNPROCESSABLE


def _after_decision(request: HttpRequest, project: Project, page: str, template: str, partial: str,
                    context_of: Any, status: int) -> HttpResponse:
    """After a decision form: back to the page (plain form), or the refreshed partial (htmx)."""
    if not wants_partial(request):
        query = request.POST.get("return_query", "")
        return redirect(reverse(page, args=[project.id]) + (f"?{query}" if query else ""))
    context = {**project_context(request, project, "review"), **context_of(request, project)}
    return render_page(request, template, context, partial=partial, status=status)

@login_required
@require_GET
def review(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    context = {**project_context(request, project, "review"), **_report_context(request, project)}
    return render_page(request, "review.html", context, partial="issues")


def _decisions_from_form(request: HttpRequest, project: Project) -> list[dict[str, Any]]:
    """One decision from a row's own buttons, or the bulk action over the checked rows."""
    multi = project.is_multi_label
    single = request.POST.get("row_action")  # "<action>:<example_id>"
    if single:
        action, _, raw_id = single.partition(":")
        pairs = [(action, raw_id)]
    else:
        action = request.POST.get("bulk_action", "")
        pairs = [(action, raw) for raw in request.POST.getlist("selected")]
        if not pairs:
            raise InvalidInput([{"message": "check at least one row for a bulk action"}])
    rows = []
    for action_name, raw_id in pairs:
        try:
            example_id = int(raw_id)
        except ValueError:
            raise InvalidInput([{"field": "example_id", "message": "bad row id"}]) from None
        row: dict[str, Any] = {"example_id": example_id}
        if action_name in ("relabel", "relabel_suggested"):
            row["action"] = "relabel"
            if action_name == "relabel_suggested" or (not single and request.POST.get("bulk_label") == "*suggested*"):
                names = [s for s in request.POST.get(f"suggested_{example_id}", "").split(",") if s]
            elif single:
                names = request.POST.getlist(f"label_{example_id}")
            else:
                names = [request.POST.get("bulk_label", "")]
            row["labels" if multi else "label"] = names if multi else (names[0] if names else "")
        else:
            row["action"] = action_name
        rows.append(row)
    return rows


@login_required
@require_POST
def decisions(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    status = 200
    try:
        rows = _decisions_from_form(request, project)
        result = noise_services.noise_decisions_apply(project=project, user=request.user, rows=rows)
        parts = [f"{result['kept']} kept" if result["kept"] else "",
                 f"{result['relabeled']} relabeled" if result["relabeled"] else "",
                 f"{result['sent_to_queue']} sent to the queue" if result["sent_to_queue"] else ""]
        messages.success(request, "Saved: " + ", ".join(p for p in parts if p) + ".")
    except InvalidInput as error:
        status = _nothing_saved(request, error)
    return _after_decision(request, project, "review", "review.html", "issues", _report_context, status)


@login_required
@require_GET
def agreement(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    overlapping = consensus_selectors.overlapping_examples(project).values_list("example_id", flat=True)
    # One query: the newest overlapping items are both the sample of the rates and the pages listed.
    sample = list(overlapping[: consensus_selectors.AGREEMENT_SAMPLE])
    page = paginate(request, sample, AGREEMENT_PER_PAGE)
    report = consensus_selectors.agreement_report(project, list(page.object_list), sample_ids=sample)
    context = {
        **project_context(request, project, "review"),
        "page": page,
        "report": report,
        "pair_percent": None if report["pair_agreement"] is None else report["pair_agreement"] * 100,
        "sample_limit": consensus_selectors.AGREEMENT_SAMPLE,
        "annotator_chart": charts.bar_chart(
            [row["username"] for row in report["annotators"]], [row["agreement"] for row in report["annotators"]],
            title="Agreement with the consensus per annotator", value_max=1.0,
            empty="No item has answers from two annotators yet",
        ),
    }
    return render_page(request, "agreement.html", context, partial="items")


# --- conflicts: near-duplicate texts with different labels ------------------------------------------------
CONFLICTS_PER_PAGE = 20
OUTLIERS_PER_PAGE = 50


def _conflicts_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    header, groups = health_selectors.conflict_report(project)
    page = paginate(request, groups, CONFLICTS_PER_PAGE)
    return {"conflicts": header, "page": page,
            "labels": [c["name"] for c in project_selectors.label_choices(project)],  # retired: not choosable
            "groups": health_selectors.conflict_groups_with_texts(project, list(page.object_list))}


@login_required
@require_GET
def conflicts(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    context = {**project_context(request, project, "review"), **_conflicts_context(request, project)}
    return render_page(request, "conflicts.html", context, partial="groups")


@login_required
@require_POST
def conflicts_settle(request: HttpRequest, project_id: int) -> HttpResponse:
    """One decision for a whole group: every member gets the chosen label."""
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    status = 200
    try:
        try:
            ids = [int(raw) for raw in request.POST.getlist("example_ids")]
        except ValueError:
            raise InvalidInput([{"field": "example_ids", "message": "bad example id"}]) from None
        chosen: Any = request.POST.getlist("labels") if project.is_multi_label else request.POST.get("label", "")
        result = health_services.conflict_group_settle(project=project, user=request.user, example_ids=ids,
                                                       label=chosen)
        messages.success(request, f"Settled {result['settled']} examples to {', '.join(result['labels'])} "
                                  f"({result['changed']} changed).")
    except InvalidInput as error:
        status = _nothing_saved(request, error)
    return _after_decision(request, project, "review-conflicts", "conflicts.html", "groups", _conflicts_context,
                           status)


# --- outliers and class health ------------------------------------------------------------------------------
@login_required
@require_GET
def data_health(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    header, rows = health_selectors.health_report(project)
    page = paginate(request, rows, OUTLIERS_PER_PAGE)
    classes = [{**row, "percent": row["share"] * 100} for row in header["classes"]]
    header = {**header, "classes": classes}
    context = {
        **project_context(request, project, "review"),
        "health": header,
        "page": page,
        "outliers": health_selectors.outlier_rows_with_texts(project, list(page.object_list)),
        "class_chart": charts.bar_chart(
            [row["label"] for row in classes], [row["share"] for row in classes],
            title="Share of labeled examples per class", empty="No class health yet",
        ),
    }
    return render_page(request, "data_health.html", context, partial="outliers")
