"""Server-rendered pages. Each reads through the same selectors and services as the API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotator import selectors


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = selectors.projects_for(request.user).select_related("serving_version")
    rows = [
        {"project": p, "role": selectors.role_of(request.user, p), "counts": selectors.project_counts(p)}
        for p in projects
    ]
    return render(request, "project_list.html", {"rows": rows})
