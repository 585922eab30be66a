"""Server-rendered pages. Each reads through the same selectors and services as the API.

This module: the project list and the project overview (counts, serving model, jobs with live progress,
training, settings).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from annotator.errors import Conflict, InvalidInput
from annotator.models import Job, Project, Role
from annotator.project_settings import POOLINGS, QUEUE_REASONS, TRAIN_MODES, encoder_names
from annotator.selectors import access
from annotator.selectors import jobs as job_selectors
from annotator.selectors import models as model_selectors
from annotator.selectors import projects as project_selectors
from annotator.selectors import queue as queue_selectors
from annotator.services import jobs as job_services
from annotator.services import models as model_services
from annotator.services import projects as project_services
from annotator.services.encoders import encoder_describe
from annotator.views.access import (
    UNPROCESSABLE,
    project_context,
    project_or_404,
    render_page,
    wants_partial,
)

INT_SETTINGS = (
    ("overlap", "Annotators per item", "More than 1 measures agreement between annotators."),
    ("lease_seconds", "Lease (seconds)", "How long an item stays with one annotator."),
    ("retrain_after_labels", "Retrain after N new labels", "0 turns automatic retraining off."),
    ("queue_size", "Queue size", "Items kept ready in the queue after each scoring."),
    ("drift_window_size", "Drift window (samples)", "Production samples per drift window."),
    ("max_text_chars", "Longest text (characters)", "Longer texts are refused at import."),
    ("max_length", "Model input (tokens)", "Texts are truncated to this many tokens."),
    ("webhook_queue_low", "Queue low alert (pending items)",
     "Webhooks hear queue.low when pending items fall below this; 0 turns it off."),
)


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    projects = access.projects_for(request.user).select_related("serving_version")
    rows = [
        {"project": p, "role": access.role_of(request.user, p), "counts": project_selectors.project_counts(p)}
        for p in projects
    ]
    return render(request, "project_list.html", {"rows": rows})


def _jobs_context(project: Project) -> dict[str, Any]:
    return {"jobs": job_selectors.recent_jobs(project), "train_modes": TRAIN_MODES,
            "default_mode": project.setting("train_mode")}


def _settings_rows(project: Project, values: dict[str, Any] | None = None,
                   errors: dict[str, str] | None = None) -> dict[str, Any]:
    values = values or {}
    errors = errors or {}
    current = {name: values.get(name, project.setting(name)) for name, _, _ in INT_SETTINGS}
    mix = values.get("queue_mix", project.setting("queue_mix"))
    return {
        "int_settings": [
            {"name": name, "title": title, "help": help_text, "value": current[name],
             "error": errors.get(f"settings.{name}")}
            for name, title, help_text in INT_SETTINGS
        ],
        "mix": [{"reason": r, "value": mix.get(r, 0), "error": errors.get(f"settings.queue_mix.{r}")}
                for r in QUEUE_REASONS],
        "mix_error": errors.get("settings.queue_mix"),
        "show_suggestions": values.get("show_suggestions", project.setting("show_suggestions")),
        "guidelines": values.get("guidelines", project.setting("guidelines")),
        "guidelines_error": errors.get("settings.guidelines"),
        "train_mode": values.get("train_mode", project.setting("train_mode")),
        "modes": TRAIN_MODES,
        "train_mode_error": errors.get("settings.train_mode"),
        **_encoder_rows(project, values, errors),
    }


def _encoder_rows(project: Project, values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The encoder and pooling fields, with the saved encoder's figures (services.encoders)."""
    saved = project.setting("encoder")
    # A name the operator has since removed stays selectable, so saving other settings does not change it.
    names = encoder_names() if saved in encoder_names() else [saved, *encoder_names()]
    return {
        "encoder": values.get("encoder", saved),
        "encoders": names,
        "encoder_error": errors.get("settings.encoder"),
        "encoder_info": encoder_describe(saved),
        "pooling": values.get("pooling", project.setting("pooling")),
        "poolings": POOLINGS,
        "pooling_error": errors.get("settings.pooling"),
    }


def _overview_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    return {
        **project_context(request, project, "overview"),
        **_jobs_context(project),
        "counts": project_selectors.project_counts(project),
        "queue": queue_selectors.queue_stats(project),
        "serving": project.serving_version,
        "stopping": model_selectors.stopping_signal(project),
        "settings_form": _settings_rows(project),
    }


@login_required
@require_GET
def overview(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    return render(request, "overview.html", _overview_context(request, project))


@login_required
@require_GET
def job_status(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """One job's progress: the polled ``_job_status.html`` partial (polling stops once the job ended),
    or a page of its own for a plain link."""
    project = project_or_404(request, project_id)
    job = job_selectors.job_in_project(project, job_id)
    if job is None:
        raise Http404("job not found")
    context = {**project_context(request, project, "overview"), "job": job}
    if wants_partial(request):
        html = render_to_string("_job_status.html", context, request=request)
        if job.status in Job.FINISHED:
            return HttpResponseStopPolling(html)
        return HttpResponse(html)
    return render(request, "job.html", context)


@login_required
@require_POST
def train(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    mode = request.POST.get("mode") or None
    try:
        seeds = int(request.POST.get("seeds") or 1)
    except ValueError:
        seeds = 0  # the service names the valid range
    status = 200
    try:
        job = model_services.training_start(project=project, user=request.user, mode=mode, seeds=seeds)
        messages.success(request, f"Training job {job.id} queued ({job.params['mode']} mode).")
    except Conflict as conflict:
        messages.warning(request, f"{conflict.errors[0]['message']}: job {conflict.extra.get('job_id')} "
                                  "shows its progress below.")
        status = 409 if not wants_partial(request) else 200
    except InvalidInput as error:
        messages.error(request, error.errors[0]["message"])
        status = UNPROCESSABLE
    if not wants_partial(request):
        if status == 200:
            return redirect("project-overview", project.id)
        return render(request, "overview.html", _overview_context(request, project), status=status)
    context = {**project_context(request, project, "overview"), **_jobs_context(project)}
    return render_page(request, "overview.html", context, partial="jobs", status=status)


@login_required
@require_POST
def job_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    job = job_selectors.job_in_project(project, job_id)
    if job is None:
        raise Http404("job not found")
    try:
        job = job_services.job_cancel(job=job)
        job.refresh_from_db()
    except InvalidInput as error:
        messages.info(request, error.errors[0]["message"])
    if not wants_partial(request):
        return redirect("project-overview", project.id)
    context = {**project_context(request, project, "overview"), "job": job}
    html = render_to_string("_job_status.html", context, request=request)
    return HttpResponseStopPolling(html) if job.status in Job.FINISHED else HttpResponse(html)


def _settings_from_form(request: HttpRequest) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, _, _ in INT_SETTINGS:
        raw = request.POST.get(name, "").strip()
        try:
            values[name] = int(raw)
        except ValueError:
            errors[f"settings.{name}"] = "must be a whole number"
            values[name] = raw
    mix = {}
    for reason in QUEUE_REASONS:
        raw = request.POST.get(f"mix_{reason}", "").strip() or "0"
        try:
            mix[reason] = float(raw)
        except ValueError:
            errors[f"settings.queue_mix.{reason}"] = "must be a number from 0 to 1"
            mix[reason] = raw
    values["queue_mix"] = mix
    values["show_suggestions"] = request.POST.get("show_suggestions") == "on"
    values["guidelines"] = request.POST.get("guidelines", "").replace("\r\n", "\n")
    values["train_mode"] = request.POST.get("train_mode", "auto")
    for name in ("encoder", "pooling"):  # absent from the form: left as saved
        if name in request.POST:
            values[name] = request.POST[name]
    return values, errors


@login_required
@require_POST
def settings_update(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    values, errors = _settings_from_form(request)
    if not errors:
        try:
            project_services.project_update_settings(project=project, settings=values)
        except InvalidInput as error:
            errors = {e.get("field", "settings"): e["message"] for e in error.errors}
    status = UNPROCESSABLE if errors else 200
    if errors:
        messages.error(request, "The settings were not saved; see the fields marked below.")
    else:
        messages.success(request, "Settings saved.")
    if not wants_partial(request) and not errors:
        return redirect("project-overview", project.id)
    context = {**_overview_context(request, project),
               "settings_form": _settings_rows(project, values if errors else None, errors)}
    return render_page(request, "overview.html", context, partial="settings", status=status)
