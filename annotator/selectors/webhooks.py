"""Reads of a project's webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from annotator.errors import InvalidInput, NotFound
from annotator.models import Project, WebhookDelivery, WebhookEndpoint


def endpoints_of(project: Project) -> QuerySet[WebhookEndpoint]:
    """The project's endpoints, oldest first, with their delivery counts by outcome."""
    return (WebhookEndpoint.objects.filter(project=project).select_related("created_by").order_by("id")
            .annotate(n_delivered=Count("deliveries", filter=Q(deliveries__status="delivered")),
                      n_failed=Count("deliveries", filter=Q(deliveries__status__in=["failed", "refused"])),
                      n_pending=Count("deliveries", filter=Q(deliveries__status="pending"))))


def endpoint_in(project: Project, endpoint_id: Any) -> WebhookEndpoint:
    """One endpoint of the project; 404 for another project's or a missing one."""
    try:
        pk = int(endpoint_id)
    except (TypeError, ValueError):
        raise NotFound("webhook endpoint not found") from None
    endpoint = WebhookEndpoint.objects.filter(project=project, pk=pk).select_related("project").first()
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    return endpoint


def delivery_in(endpoint: WebhookEndpoint, delivery_id: Any) -> WebhookDelivery:
    try:
        pk = int(delivery_id)
    except (TypeError, ValueError):
        raise NotFound("webhook delivery not found") from None
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint, pk=pk).select_related("endpoint__project").first()
    if delivery is None:
        raise NotFound("webhook delivery not found")
    return delivery


def deliveries_of(*, project: Project, endpoint: WebhookEndpoint | None = None,
                  status: str | None = None) -> QuerySet[WebhookDelivery]:
    """The delivery log, newest first: of one endpoint, or of every endpoint of the project."""
    rows = WebhookDelivery.objects.filter(endpoint__project=project).select_related("endpoint")
    if endpoint is not None:
        rows = rows.filter(endpoint=endpoint)
    if status:
        if status not in WebhookDelivery.Status.values:
            raise InvalidInput([{"field": "status", "message":
                                 f"status must be one of {', '.join(WebhookDelivery.Status.values)}"}])
        rows = rows.filter(status=status)
    return rows.order_by("-id")


def delivery_of_project(project: Project, delivery_id: Any) -> WebhookDelivery:
    """A delivery to any endpoint of the project; 404 otherwise."""
    try:
        pk = int(delivery_id)
    except (TypeError, ValueError):
        raise NotFound("webhook delivery not found") from None
    delivery = (WebhookDelivery.objects.filter(pk=pk, endpoint__project=project)
                .select_related("endpoint__project").first())
    if delivery is None:
        raise NotFound("webhook delivery not found")
    return delivery
