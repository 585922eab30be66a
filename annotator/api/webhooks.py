"""REST API v1: a project's webhook endpoints and their delivery log (project admins only).

The signing secret is in the answer of the create and rotate-secret calls only, never in a list or a read.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api.pagination import PAGE_PARAMETERS, Pagination, paginated
from annotator.api.views import ERRORS, body_dict
from annotator.models import Role, WebhookDelivery, WebhookEndpoint, WebhookEvent
from annotator.selectors import access
from annotator.selectors import webhooks as webhook_selectors
from annotator.services import webhooks as webhook_services


class WebhookIn(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="http or https; no credentials; a public address "
                                                          "unless the operator allows private ones")
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.values))
    active = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)


class WebhookPatchIn(WebhookIn):
    url = serializers.URLField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.values), required=False)
    active = serializers.BooleanField(required=False)


class WebhookOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    description = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    deliveries = inline_serializer("WebhookDeliveryCounts", {
        "delivered": serializers.IntegerField(), "failed": serializers.IntegerField(),
        "pending": serializers.IntegerField()}, required=False)


class WebhookWithSecretOut(WebhookOut):
    secret = serializers.CharField(help_text="shown in this answer only: keep it to verify signatures")


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    uuid = serializers.UUIDField(help_text="the body's id and the X-Relabel-Delivery header")
    endpoint = serializers.IntegerField()
    event = serializers.CharField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.values)
    attempts = serializers.IntegerField()
    last_response_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    duration_ms = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    redelivery_of = serializers.IntegerField(allow_null=True)
    payload = serializers.DictField()


def webhook_out(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.pk, "url": endpoint.url, "description": endpoint.description, "events": endpoint.events,
        "active": endpoint.active, "created_by": endpoint.created_by.get_username() if endpoint.created_by else None,
        "created_at": endpoint.created_at.isoformat(),
    }
    if hasattr(endpoint, "n_delivered"):
        body["deliveries"] = {"delivered": endpoint.n_delivered, "failed": endpoint.n_failed,
                              "pending": endpoint.n_pending}
    if secret:
        body["secret"] = endpoint.secret
    return body


def delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": delivery.pk, "uuid": str(delivery.uuid), "endpoint": delivery.endpoint_id, "event": delivery.event,
        "status": delivery.status, "attempts": delivery.attempts, "last_response_code": delivery.last_response_code,
        "last_error": delivery.last_error, "duration_ms": delivery.duration_ms,
        "created_at": iso(delivery.created_at), "next_attempt_at": iso(delivery.next_attempt_at),
        "delivered_at": iso(delivery.delivered_at), "redelivery_of": delivery.redelivery_of_id,
        "payload": delivery.payload,
    }


ENDPOINT_ID = "webhook_id"


class ProjectWebhooksApi(APIView):
    @extend_schema(operation_id="v1_projects_webhooks_list", parameters=PAGE_PARAMETERS,
                   responses={200: paginated("PaginatedWebhookList",
                                                                         WebhookOut(many=True)), **ERRORS},
                   summary="Webhook endpoints of the project (admin)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        paginator = Pagination()
        page = paginator.paginate_queryset(webhook_selectors.endpoints_of(project), request, view=self)
        return paginator.get_paginated_response([webhook_out(e) for e in page])

    @extend_schema(request=WebhookIn, responses={201: WebhookWithSecretOut, **ERRORS},
                   summary="Add a webhook endpoint; the answer holds its secret, shown this once (admin)")
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        endpoint = webhook_services.webhook_create(project=project, user=request.user, data=body_dict(request))
        return Response(webhook_out(endpoint, secret=True), status=201)


class WebhookDetailApi(APIView):
    def _endpoint(self, request: Request, project_id: int, webhook_id: int) -> WebhookEndpoint:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        return webhook_selectors.endpoint_in(project, webhook_id)

    @extend_schema(responses={200: WebhookOut, **ERRORS}, summary="One webhook endpoint (admin)")
    def get(self, request: Request, project_id: int, webhook_id: int) -> Response:
        return Response(webhook_out(self._endpoint(request, project_id, webhook_id)))

    @extend_schema(request=WebhookPatchIn, responses={200: WebhookOut, **ERRORS},
                   summary="Change an endpoint's url, events, description or active flag (admin)")
    def patch(self, request: Request, project_id: int, webhook_id: int) -> Response:
        endpoint = self._endpoint(request, project_id, webhook_id)
        endpoint = webhook_services.webhook_update(endpoint=endpoint, data=body_dict(request))
        return Response(webhook_out(endpoint))

    @extend_schema(request=None, responses={204: None, **ERRORS},
                   summary="Remove an endpoint and its delivery log (admin)")
    def delete(self, request: Request, project_id: int, webhook_id: int) -> Response:
        webhook_services.webhook_delete(endpoint=self._endpoint(request, project_id, webhook_id))
        return Response(status=204)


class WebhookSecretRotateApi(APIView):
    @extend_schema(request=None, responses={200: WebhookWithSecretOut, **ERRORS},
                   summary="Replace the endpoint's signing secret; the answer holds the new one (admin)")
    def post(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        endpoint = webhook_services.webhook_secret_rotate(endpoint=webhook_selectors.endpoint_in(project, webhook_id))
        return Response(webhook_out(endpoint, secret=True))


class WebhookTestApi(APIView):
    @extend_schema(request=None, responses={202: DeliveryOut, **ERRORS},
                   summary="Send the endpoint a ping event now (admin)")
    def post(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        endpoint = webhook_selectors.endpoint_in(project, webhook_id)
        return Response(delivery_out(webhook_services.webhook_ping(endpoint=endpoint, user=request.user)), status=202)


STATUS_FILTER = OpenApiParameter("status", str, enum=WebhookDelivery.Status.values,
                                 description="only deliveries in this status")


class WebhookDeliveriesApi(APIView):
    @extend_schema(operation_id="v1_projects_webhooks_deliveries_list", parameters=[STATUS_FILTER, *PAGE_PARAMETERS],
                   responses={200: paginated("PaginatedWebhookDeliveryList", DeliveryOut(many=True)), **ERRORS},
                   summary="The endpoint's delivery log, newest first (admin)")
    def get(self, request: Request, project_id: int, webhook_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        endpoint = webhook_selectors.endpoint_in(project, webhook_id)
        rows = webhook_selectors.deliveries_of(project=project, endpoint=endpoint,
                                               status=request.query_params.get("status"))
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([delivery_out(d) for d in page])


class WebhookRedeliverApi(APIView):
    @extend_schema(request=None, responses={202: DeliveryOut, **ERRORS},
                   summary="Send a delivery's event again, as a new delivery (admin)")
    def post(self, request: Request, project_id: int, webhook_id: int, delivery_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        endpoint = webhook_selectors.endpoint_in(project, webhook_id)
        delivery = webhook_selectors.delivery_in(endpoint, delivery_id)
        return Response(delivery_out(webhook_services.webhook_redeliver(delivery=delivery)), status=202)
