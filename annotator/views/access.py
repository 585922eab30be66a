"""What every project page shares: the membership and role check, the page context and the choice
between the full page and an htmx partial."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from annotator.errors import Forbidden, NotFound, ServiceError
from annotator.models import Project, Role
from annotator.selectors import access
from annotator.selectors.access import ROLE_RANK

# Form errors answer 422 (htmx is configured in base.html to swap it), so a failed POST never reads as a
# success to a client and the page still shows the problems.
UNPROCESSABLE = 422

NAV = (
    ("overview", "Overview", "project-overview", Role.ANNOTATOR),
    ("annotate", "Annotate", "annotate", Role.ANNOTATOR),
    ("review", "Review", "review", Role.REVIEWER),
    ("models", "Models", "models", Role.REVIEWER),
    ("drift", "Drift", "drift", Role.REVIEWER),
    ("team", "Team", "team", Role.REVIEWER),
    ("data", "Import/Export", "import", Role.REVIEWER),
    ("labels", "Labels", "labels", Role.ADMIN),
    ("members", "Members", "members", Role.ADMIN),
)


def project_or_404(request: HttpRequest, project_id: int, role: str = Role.ANNOTATOR) -> Project:
    """The project when the user is a member with at least ``role``; 404 otherwise (pages never say 403:
    a page the role cannot use does not exist for that user)."""
    try:
        return access.project_for(request.user, project_id, role=role)
    except (NotFound, Forbidden):
        raise Http404("project not found") from None


def project_context(request: HttpRequest, project: Project, active: str) -> dict[str, Any]:
    role = access.role_of(request.user, project)
    rank = ROLE_RANK[role]
    nav = [
        {"key": key, "title": title, "url": reverse(url_name, args=[project.id]), "active": key == active}
        for key, title, url_name, needed in NAV
        if rank >= ROLE_RANK[needed]
    ]
    return {
        "project": project,
        "role": role,
        "can_review": rank >= ROLE_RANK[Role.REVIEWER],
        "is_admin": role == Role.ADMIN,
        "nav": nav,
        "active": active,
    }


def wants_partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and not htmx.boosted


def render_page(request: HttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None,
                status: int = 200) -> HttpResponse:
    """The full page, or only ``partial`` of it for an htmx request."""
    name = f"{template}#{partial}" if partial and wants_partial(request) else template
    return render(request, name, context, status=status)


def error_list(error: ServiceError) -> list[dict[str, Any]]:
    return [{"line": e.get("line"), "index": e.get("index"), "field": e.get("field"), "message": e["message"]}
            for e in error.errors]


def flash_errors(request: HttpRequest, error: ServiceError) -> None:
    for problem in error.errors[:10]:
        messages.error(request, problem["message"])


def paginate(request: HttpRequest, items: Any, per_page: int, *, count: int | None = None) -> Page:
    paginator = Paginator(items, per_page)
    if count is not None:
        paginator.count = count  # type: ignore[misc]  # a cached property; a known count saves a COUNT(*)
    return paginator.get_page(request.GET.get("page"))
