"""The project's webhooks page (admins only; part of the project's settings): add and remove endpoints, pick
their events, send a test, rotate a secret, and read the delivery log. Each form calls the same service as
the API (services.webhooks); a new secret is shown in the answer that made it, never stored in a message or
shown again."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from annotator.errors import Conflict, InvalidInput, NotFound
from annotator.models import Project, Role, WebhookDelivery, WebhookEndpoint, WebhookEvent
from annotator.selectors import webhooks as webhook_selectors
from annotator.services import webhooks as webhook_services
from annotator.views.access import UNPROCESSABLE, paginate, project_context, project_or_404, render_page

LOG_PAGE = 25


def _context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    status = request.GET.get("status") or ""
    if status not in WebhookDelivery.Status.values:
        status = ""
    log = webhook_selectors.deliveries_of(project=project, status=status or None)
    return {
        **project_context(request, project, "webhooks"),
        "endpoints": list(webhook_selectors.endpoints_of(project)),
        "events": WebhookEvent.choices,
        "log": paginate(request, log, LOG_PAGE),
        "log_status": status,
        "statuses": WebhookDelivery.Status.values,
        "query_prefix": f"status={status}&" if status else "",
        "form": {"url": "", "description": "", "events": []},
        "errors": {},
        **extra,
    }


def _endpoint_or_404(project: Project, webhook_id: int) -> WebhookEndpoint:
    try:
        return webhook_selectors.endpoint_in(project, webhook_id)
    except NotFound:
        raise Http404("webhook endpoint not found") from None


@login_required
@require_http_methods(["GET", "POST"])
def webhooks(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the page. POST: add an endpoint, then show its secret this once."""
    project = project_or_404(request, project_id, role=Role.ADMIN)
    if request.method == "GET":
        return render_page(request, "webhooks.html", _context(request, project))
    data = {"url": request.POST.get("url", "").strip(), "events": request.POST.getlist("events"),
            "description": request.POST.get("description", "")}
    try:
        endpoint = webhook_services.webhook_create(project=project, user=request.user, data=data)
    except InvalidInput as error:
        errors = {e.get("field", "form"): e["message"] for e in error.errors}
        return render_page(request, "webhooks.html", _context(request, project, form=data, errors=errors),
                           status=UNPROCESSABLE)
    messages.success(request, f"Webhook endpoint {endpoint.url} added.")
    return render_page(request, "webhooks.html", _context(request, project, new_secret=endpoint))


@login_required
@require_POST
def webhook_update(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    """Save an endpoint's events and active flag."""
    project = project_or_404(request, project_id, role=Role.ADMIN)
    endpoint = _endpoint_or_404(project, webhook_id)
    data = {"events": request.POST.getlist("events"), "active": request.POST.get("active") == "on"}
    try:
        webhook_services.webhook_update(endpoint=endpoint, data=data)
        messages.success(request, f"Webhook endpoint {endpoint.url} saved.")
    except InvalidInput as error:
        messages.error(request, f"Not saved: {error.errors[0]['message']}")
    return redirect("webhooks", project.id)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    endpoint = _endpoint_or_404(project, webhook_id)
    webhook_services.webhook_delete(endpoint=endpoint)
    messages.success(request, f"Webhook endpoint {endpoint.url} removed with its delivery log.")
    return redirect("webhooks", project.id)


@login_required
@require_POST
def webhook_test(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    endpoint = _endpoint_or_404(project, webhook_id)
    try:
        webhook_services.webhook_ping(endpoint=endpoint, user=request.user)
        messages.success(request, f"A ping is on its way to {endpoint.url}; the log below shows how it went.")
    except Conflict as error:
        messages.error(request, error.errors[0]["message"])
    return redirect("webhooks", project.id)


@login_required
@require_POST
def webhook_rotate_secret(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    endpoint = webhook_services.webhook_secret_rotate(endpoint=_endpoint_or_404(project, webhook_id))
    messages.success(request, f"New secret for {endpoint.url}; the old one no longer signs deliveries.")
    return render_page(request, "webhooks.html", _context(request, project, new_secret=endpoint))


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, project_id: int, delivery_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    try:
        delivery = webhook_selectors.delivery_of_project(project, delivery_id)
    except NotFound:
        raise Http404("webhook delivery not found") from None
    try:
        webhook_services.webhook_redeliver(delivery=delivery)
        messages.success(request, f"Delivery {delivery.uuid} sent again as a new delivery.")
    except Conflict as error:
        messages.error(request, error.errors[0]["message"])
    return redirect("webhooks", project.id)
