"""The team page (reviewers and admins; an annotator gets 404 like on every reviewer page, since the page
compares people with each other): each annotator's answers, time per item, agreement with the consensus and
with each other, CROWDLAB quality, and the share of their labels a review changed."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from annotator.models import Role
from annotator.selectors import team as team_selectors
from annotator.views import charts
from annotator.views.access import project_context, project_or_404, render_page


@login_required
@require_GET
def team(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    report = team_selectors.team_report(project)
    in_pairs = sorted({name for pair in report["pairs"] for name in (pair["a"], pair["b"])})
    kappas = {(pair["a"], pair["b"]): (pair["kappa"], pair["n"]) for pair in report["pairs"]}
    context = {
        **project_context(request, project, "team"),
        "report": report,
        "kappa_chart": charts.kappa_heatmap(in_pairs, kappas, title="Cohen's kappa for each pair of annotators"),
        "break_minutes": report["break_seconds"] // 60,
    }
    return render_page(request, "team.html", context)
