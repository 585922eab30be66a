"""``/metrics``: the Prometheus exposition, for a scraper with the token or on an allowed address."""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from annotator import metrics
from annotator.models import QueueItem
from annotator.selectors.queue import queue_depth

_OPEN = (QueueItem.Status.PENDING, QueueItem.Status.LEASED)


class QueueDepthCollector:
    """Open queue items by reason and status, counted when scraped (one query), zeros included so a
    series does not vanish when a queue empties."""

    def collect(self) -> Iterator[Metric]:
        counts = {(reason, status): 0 for reason in QueueItem.Reason.values for status in _OPEN}
        for reason, status, n in queue_depth():
            counts[(reason, status)] = n
        family = GaugeMetricFamily("relabel_queue_items", "Open queue items of all projects, by reason and status.",
                                   labels=["reason", "status"])
        for (reason, status), n in sorted(counts.items()):
            family.add_metric([reason, status], n)
        yield family


def _allowed(request: HttpRequest) -> bool | None:
    """True to serve; False for 403; None for 404 (no token configured and an address not allowed)."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(
        header.removeprefix("Bearer ").strip().encode(), token.encode()
    ):
        return True
    # The socket address, never X-Forwarded-For: a client could write that header itself.
    if request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS:
        return True
    return False if token else None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    allowed = _allowed(request)
    if allowed is None:
        raise Http404()
    if not allowed:
        return HttpResponseForbidden("metrics need a bearer token or an allowed address\n",
                                     content_type="text/plain")
    queue = CollectorRegistry(auto_describe=False)
    queue.register(QueueDepthCollector())
    body = generate_latest(metrics.process_registry()) + generate_latest(queue)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
