"""Sending a webhook delivery: one attempt per task run, signed, with retries and exponential backoff.

An attempt claims its delivery first (the row must be pending and due; the claim counts the attempt and marks
it in flight), so a task delivered twice sends once. It then resolves and checks the target again
(services.webhook_targets) and connects to the checked address with small connect and read timeouts,
following no redirect. The answer decides:

- 2xx: ``delivered``;
- 408, 429, 5xx, a timeout or a connection error: tried again after ``WEBHOOK_RETRY_BASE_SECONDS * 2**(n-1)``
  (or the receiver's ``Retry-After`` when longer, at most ``WEBHOOK_RETRY_MAX_SECONDS``) until
  ``WEBHOOK_MAX_ATTEMPTS`` attempts, then ``failed``;
- any other 4xx, or a redirect: ``failed`` at once (sending it again would get the same answer);
- a target the operator does not allow: ``refused``, nothing sent.

The body is the stored payload as compact JSON with sorted keys; the headers carry the event, the delivery id,
the timestamp of this attempt and ``X-Relabel-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
(docs/webhooks.md shows how a receiver checks it). Neither the secret nor the signature is ever logged.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import urllib3
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotator import dispatch
from annotator.models import WebhookDelivery, WebhookEndpoint
from annotator.services.webhook_targets import Target, TargetRefused, target_resolve

log = logging.getLogger(__name__)

USER_AGENT = "Relabel-Webhooks/1"
RETRY_STATUSES = {408, 429}
EXCERPT_BYTES = 300
# The sweep sends a pending delivery again when it is this much past due (its task was lost).
RESEND_AFTER_SECONDS = 60.0
Status = WebhookDelivery.Status


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact JSON, keys sorted (a JSONField does not keep key order)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(delivery: WebhookDelivery, secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Relabel-Event": delivery.event,
        "X-Relabel-Delivery": str(delivery.uuid),
        "X-Relabel-Timestamp": str(timestamp),
        "X-Relabel-Signature": signature(secret, timestamp, body),
        "X-Relabel-Attempt": str(delivery.attempts),
    }


@dataclass
class Answer:
    """What one attempt got: the status code (None when no answer came), an error, Retry-After, the time."""

    code: int | None
    error: str = ""
    retry_after: float | None = None
    duration_ms: float = 0.0
    retryable: bool = False


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt ``attempt`` (1-based): exponential, or Retry-After when longer; capped."""
    wait = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return min(wait, settings.WEBHOOK_RETRY_MAX_SECONDS)


def in_flight_seconds() -> float:
    """How long an attempt may take at most; until then a second task for the delivery leaves it alone."""
    return settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT + 30.0


def post(target: Target, body: bytes, headers: dict[str, str]) -> Answer:
    """POST ``body`` to the checked address of ``target``: no redirect followed, no retry by urllib3."""
    timeout = urllib3.Timeout(connect=settings.WEBHOOK_CONNECT_TIMEOUT, read=settings.WEBHOOK_READ_TIMEOUT)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           cert_reqs="CERT_REQUIRED", server_hostname=target.host,
                                           assert_hostname=target.host)
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)
    started = time.monotonic()
    try:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.host_header},
                                redirect=False, retries=False, preload_content=False, assert_same_host=False)
        try:
            excerpt = response.read(EXCERPT_BYTES, decode_content=False).decode("utf-8", "replace")
        except (urllib3.exceptions.HTTPError, OSError):
            excerpt = ""
        finally:
            response.release_conn()
        return Answer(code=response.status, error=excerpt.strip(),
                      retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                      duration_ms=(time.monotonic() - started) * 1000)
    except urllib3.exceptions.TimeoutError as error:
        kind = "connect" if isinstance(error, urllib3.exceptions.ConnectTimeoutError) else "read"
        return Answer(code=None, error=f"{kind} timeout", retryable=True,
                      duration_ms=(time.monotonic() - started) * 1000)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return Answer(code=None, error=f"connection failed: {type(error).__name__}: {error}", retryable=True,
                      duration_ms=(time.monotonic() - started) * 1000)
    finally:
        pool.close()


def _claim(delivery_id: int) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
    """The delivery and its endpoint with this attempt counted, or None: not pending any more, not due yet
    (a duplicate task), or locked by another attempt right now."""
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id, status=Status.PENDING).first())
        if delivery is None:
            return None
        now = timezone.now()
        if delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(seconds=1):
            return None
        if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            # Its last attempt never recorded an outcome (the worker died in it): no attempt beyond the limit.
            delivery.status = Status.FAILED
            delivery.next_attempt_at = None
            delivery.last_error = f"gave up after {delivery.attempts} attempts; the last one was lost with its worker"
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=in_flight_seconds())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery, delivery.endpoint


def _record(delivery: WebhookDelivery, status: str, *, answer: Answer | None = None, error: str | None = None,
            retry_in: float | None = None) -> bool:
    """Write this attempt's outcome, if the delivery is still as the claim left it; True when written."""
    now = timezone.now()
    if error is None:
        error = answer.error if answer else ""
    fields: dict[str, Any] = {"status": status, "last_error": error[:500]}
    if answer is not None:
        fields.update(last_response_code=answer.code, duration_ms=round(answer.duration_ms, 1))
    if status == Status.DELIVERED:
        fields["delivered_at"] = now
    fields["next_attempt_at"] = now + timedelta(seconds=retry_in) if retry_in is not None else None
    written = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING,
                                             attempts=delivery.attempts).update(**fields)
    return written == 1


def delivery_attempt(delivery_id: int) -> str | None:
    """Make one attempt at a delivery and record it; the status it is left in, or None when this run had
    nothing to do (see :func:`_claim`). A retry is sent to the broker with its countdown."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return None
    delivery, endpoint = claimed
    if not endpoint.active:
        _record(delivery, Status.FAILED, error="the endpoint was deactivated before this delivery was sent")
        return Status.FAILED
    try:
        target = target_resolve(endpoint.url)
    except TargetRefused as refused:
        log.warning("webhook delivery %s refused: %s", delivery.uuid, refused)
        _record(delivery, Status.REFUSED, error=f"refused: {refused}")
        return Status.REFUSED
    body = body_bytes(delivery.payload)
    try:
        answer = post(target, body, signed_headers(delivery, endpoint.secret, body, timestamp=int(time.time())))
    except Exception as error:  # noqa: BLE001 - recorded, so the sweep does not send it again and again
        log.exception("webhook delivery %s: unexpected error", delivery.uuid)
        _record(delivery, Status.FAILED, error=f"unexpected error: {type(error).__name__}: {error}")
        return Status.FAILED
    code = answer.code
    if code is not None and 200 <= code < 300:
        _record(delivery, Status.DELIVERED, answer=answer, error="")
        return Status.DELIVERED
    if code is not None and 300 <= code < 400:
        answer.error = f"HTTP {code}: redirects are not followed; point the endpoint at the final URL"
        _record(delivery, Status.FAILED, answer=answer)
        return Status.FAILED
    if code is not None:
        answer.retryable = code in RETRY_STATUSES or code >= 500
        answer.error = f"HTTP {code}" + (f": {answer.error}" if answer.error else "")
    if not answer.retryable or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        if answer.retryable:
            answer.error = f"gave up after {delivery.attempts} attempts; last: {answer.error}"
        log.info("webhook delivery %s failed: %s", delivery.uuid, answer.error[:200])
        _record(delivery, Status.FAILED, answer=answer)
        return Status.FAILED
    wait = backoff_seconds(delivery.attempts, answer.retry_after)
    if _record(delivery, Status.PENDING, answer=answer, retry_in=wait):
        dispatch.send(dispatch.DELIVER_WEBHOOK, delivery.pk, countdown=wait)
    return Status.PENDING


def deliveries_recover() -> int:
    """Send again the pending deliveries well past their due time: their task never reached the broker (Redis
    was down when the event committed) or its worker died mid-attempt. Each is sent once per attempt, whichever
    sweep sees it first (dispatch.send_once). Returns how many were sent."""
    database = settings.DATABASES["default"]["NAME"]
    overdue = timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS)
    sent = 0
    for pk, attempts in (WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lt=overdue)
                         .order_by("next_attempt_at").values_list("id", "attempts")[:500]):
        outcome = dispatch.send_once(f"{database}:webhook:{pk}:{attempts}", dispatch.DELIVER_WEBHOOK, pk,
                                     within_seconds=RESEND_AFTER_SECONDS)
        if outcome == "unreachable":
            break
        sent += outcome == "sent"
    return sent
