"""Webhooks: a project's endpoints (made, changed and removed by its admins) and the events that reach them.

An event (:func:`webhook_event_emit`) writes one pending :class:`WebhookDelivery` per active endpoint that
chose it, in the transaction of the change it reports (a promotion, a finished job, an alerting drift window,
the queue running low), and asks for each delivery's task once that transaction commits: an event of a
change that was rolled back is never sent, and one whose task never reached the broker is sent by the sweep
(services.webhook_delivery.deliveries_recover). Sending, signing and retrying live in
services.webhook_delivery; which URLs may be called in services.webhook_targets.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotator import dispatch
from annotator.errors import Conflict, InvalidInput
from annotator.models import (
    DriftWindow,
    Job,
    ModelVersion,
    Project,
    QueueItem,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from annotator.services.jsonable import jsonable
from annotator.services.webhook_targets import TargetRefused, target_resolve, url_problem
from annotator.text import unicode_problem

PING = "ping"  # the test event an admin sends by hand; no endpoint subscribes to it
EVENTS = tuple(WebhookEvent.values)
MAX_ENDPOINTS_PER_PROJECT = 20
MAX_DESCRIPTION = 200
ENDPOINT_FIELDS = {"url", "events", "active", "description"}


def secret_new() -> str:
    """A fresh signing secret: 32 random bytes, URL-safe text."""
    return "whsec_" + secrets.token_urlsafe(32)


# --- endpoints ------------------------------------------------------------------------------------------
def _validated(data: Any, *, partial: bool) -> dict[str, Any]:
    """The endpoint fields in ``data``, or InvalidInput naming every bad field (nothing is written)."""
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    errors: list[dict[str, Any]] = [{"field": key, "message": f"unknown field; use {', '.join(sorted(ENDPOINT_FIELDS))}"}
                                    for key in data if key not in ENDPOINT_FIELDS]
    clean: dict[str, Any] = {}
    if "url" in data or not partial:
        url = data.get("url")
        problem = url_problem(url)
        if problem:
            errors.append({"field": "url", "message": f"url {problem}"})
        else:
            clean["url"] = url.strip()
    if "events" in data or not partial:
        events = data.get("events")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            errors.append({"field": "events", "message": f"events must be a non-empty list of: {', '.join(EVENTS)}"})
        else:
            unknown = [e for e in events if e not in EVENTS]
            if unknown:
                errors.append({"field": "events", "message": f"unknown event {unknown[0]!r}; use {', '.join(EVENTS)}"})
            else:
                clean["events"] = [e for e in EVENTS if e in events]  # one order, no repeats
    if "active" in data:
        if not isinstance(data["active"], bool):
            errors.append({"field": "active", "message": "active must be true or false"})
        else:
            clean["active"] = data["active"]
    if "description" in data:
        description = data["description"]
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or unicode_problem(description):
            errors.append({"field": "description",
                           "message": f"description must be text of at most {MAX_DESCRIPTION} characters"})
        else:
            clean["description"] = description.strip()
    if not errors and "url" in clean:
        try:
            target_resolve(clean["url"])
        except TargetRefused as refused:
            errors.append({"field": "url", "message": f"refused: {refused}"})
    if errors:
        raise InvalidInput(errors)
    return clean


def webhook_create(*, project: Project, user: AbstractBaseUser, data: Any) -> WebhookEndpoint:
    """A new endpoint with a fresh secret (the caller shows it once). The URL must resolve to an address the
    operator allows (services.webhook_targets)."""
    clean = _validated(data, partial=False)
    with transaction.atomic():
        # The project row's lock counts the endpoints of concurrent creates one at a time.
        Project.objects.select_for_update().filter(pk=project.pk).values_list("id").first()
        if WebhookEndpoint.objects.filter(project=project).count() >= MAX_ENDPOINTS_PER_PROJECT:
            raise InvalidInput(f"a project has at most {MAX_ENDPOINTS_PER_PROJECT} webhook endpoints")
        return WebhookEndpoint.objects.create(project=project, created_by=user, secret=secret_new(), **clean)


def webhook_update(*, endpoint: WebhookEndpoint, data: Any) -> WebhookEndpoint:
    """Change an endpoint's url, events, description or active flag (any subset); all or nothing."""
    clean = _validated(data, partial=True)
    for name, value in clean.items():
        setattr(endpoint, name, value)
    endpoint.save(update_fields=[*clean, "updated_at"])
    return endpoint


def webhook_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its delivery log; pending deliveries are not sent."""
    endpoint.delete()


def webhook_secret_rotate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret for the endpoint (the caller shows it once); deliveries from now on are signed with it."""
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


# --- deliveries -----------------------------------------------------------------------------------------
def payload_for(*, delivery_id: uuid.UUID, event: str, project: dict[str, Any], data: dict[str, Any],
                created_at: datetime) -> dict[str, Any]:
    """The body of a delivery: ``{"id", "event", "created_at", "project": {"id", "name"}, "data"}``."""
    return {"id": str(delivery_id), "event": event, "created_at": created_at.isoformat(),
            "project": project, "data": jsonable(data)}


def _deliveries_create(endpoints: list[WebhookEndpoint], *, event: str, project: dict[str, Any],
                       data: dict[str, Any], created_at: datetime | None = None,
                       redelivery_of: WebhookDelivery | None = None) -> list[WebhookDelivery]:
    now = timezone.now()
    rows = []
    for endpoint in endpoints:
        delivery_id = uuid.uuid4()
        rows.append(WebhookDelivery(
            uuid=delivery_id, endpoint=endpoint, event=event, next_attempt_at=now, redelivery_of=redelivery_of,
            payload=payload_for(delivery_id=delivery_id, event=event, project=project, data=data,
                                created_at=created_at or now)))
    with transaction.atomic():
        created = WebhookDelivery.objects.bulk_create(rows)
        for delivery in created:
            dispatch.send_after_commit(dispatch.DELIVER_WEBHOOK, delivery.pk)
    return created


def webhook_event_emit(*, project_id: int, event: str, data: dict[str, Any]) -> list[WebhookDelivery]:
    """Queue ``event`` for every active endpoint of the project that chose it; sent after the caller's
    transaction commits. One query when no endpoint listens."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(project_id=project_id, active=True).only("id", "events")
                 if event in e.events]
    if not endpoints:
        return []
    name = Project.objects.filter(pk=project_id).values_list("name", flat=True).first()
    return _deliveries_create(endpoints, event=event, project={"id": project_id, "name": name}, data=data)


def webhook_ping(*, endpoint: WebhookEndpoint, user: AbstractBaseUser) -> WebhookDelivery:
    """Send the endpoint a ``ping`` event now (the "test" button), whatever events it chose."""
    if not endpoint.active:
        raise Conflict("the endpoint is not active; activate it first")
    project = endpoint.project
    [delivery] = _deliveries_create(
        [endpoint], event=PING, project={"id": project.id, "name": project.name},
        data={"message": "a test delivery from Relabel", "requested_by": user.get_username()})
    return delivery


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event again as a new delivery (a new id and log row; the same event, ``created_at``
    and ``data``)."""
    endpoint = delivery.endpoint
    if not endpoint.active:
        raise Conflict("the endpoint is not active; activate it first")
    payload = delivery.payload
    [again] = _deliveries_create(
        [endpoint], event=delivery.event, project=payload.get("project", {}), data=payload.get("data", {}),
        created_at=datetime.fromisoformat(payload["created_at"]) if payload.get("created_at") else None,
        redelivery_of=delivery)
    return again


# --- the events -----------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_event(job: Job) -> None:
    """``job.finished`` / ``job.failed`` for a job that just ended (top-level jobs only: the scoring and
    queue rebuild of a train job are part of it, and the train job ends after them)."""
    if job.parent_id is not None or job.status not in (Job.Status.SUCCEEDED, Job.Status.FAILED):
        return
    event = WebhookEvent.JOB_FINISHED if job.status == Job.Status.SUCCEEDED else WebhookEvent.JOB_FAILED
    result = job.result or {}
    webhook_event_emit(project_id=job.project_id, event=event, data={
        "job": {"id": job.pk, "kind": job.kind, "status": job.status, "message": job.message,
                "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at)},
        "model_version": result.get("model_version"),
        "promoted": result.get("promoted"),
    })


def version_promoted_event(version: ModelVersion, *, reason: str, replaced: ModelVersion | None) -> None:
    metrics = version.metrics or {}
    webhook_event_emit(project_id=version.project_id, event=WebhookEvent.VERSION_PROMOTED, data={
        "model_version": {"id": version.pk, "number": version.number, "mode": version.mode,
                          "macro_f1": metrics.get("macro_f1"), "promoted_at": _iso(version.promoted_at)},
        "replaced_version": replaced.number if replaced else None,
        "rollback": bool(replaced is not None and replaced.number > version.number),
        "reason": reason,
    })


def drift_alert_event(window: DriftWindow, version: ModelVersion) -> None:
    if not window.alert:
        return
    webhook_event_emit(project_id=window.project_id, event=WebhookEvent.DRIFT_ALERT, data={
        "window": {"id": window.pk, "sequence": window.sequence, "start": _iso(window.start),
                   "end": _iso(window.end), "n": window.n, "class_shift": window.class_shift,
                   "mean_confidence": window.mean_confidence, "confidence_shift": window.confidence_shift,
                   "embedding_drift": window.embedding_drift},
        "model_version": version.number,
        "reasons": list(window.reasons),
        "actions": list(window.actions),
    })


def queue_low_check(*, project: Project) -> bool:
    """Fire ``queue.low`` when the items left to lease (pending, or leased and expired) fell below the
    project's ``webhook_queue_low``, once per crossing: ``Project.queue_low_at`` is set by the one call that
    saw the crossing first (a conditional update) and cleared once the queue is back at or above it. True
    when this call fired it. Does nothing (one query) when no endpoint listens."""
    threshold = int(project.setting("webhook_queue_low"))
    if threshold <= 0:
        return False
    if not any(WebhookEvent.QUEUE_LOW in e for e in WebhookEndpoint.objects.filter(
            project=project, active=True).values_list("events", flat=True)):
        return False
    now = timezone.now()
    # Counted up to the threshold only (exact below it, which is when it is reported): a queue of a million
    # items costs what a queue of twenty does.
    left = QueueItem.objects.filter(project=project).filter(
        Q(status=QueueItem.Status.PENDING) | Q(status=QueueItem.Status.LEASED, lease_expires_at__lt=now)
    ).values("id")[:threshold].count()
    rows = Project.objects.filter(pk=project.pk)
    if left >= threshold:
        rows.filter(queue_low_at__isnull=False).update(queue_low_at=None)
        return False
    with transaction.atomic():
        if rows.filter(queue_low_at__isnull=True).update(queue_low_at=now) != 1:
            return False  # this crossing was reported already
        leased = QueueItem.objects.filter(project=project, status=QueueItem.Status.LEASED,
                                          lease_expires_at__gte=now).count()
        webhook_event_emit(project_id=project.pk, event=WebhookEvent.QUEUE_LOW,
                           data={"pending": left, "leased": leased, "threshold": threshold})
    return True
