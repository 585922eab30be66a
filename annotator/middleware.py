from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from annotator import metrics

# Bodies up to this size are read and discarded before answering 413, so the client sees the answer
# instead of a reset connection; anything bigger is cut off.
_DRAIN_LIMIT = 256 * 1024 * 1024


class BodySizeLimitMiddleware:
    """413 for a body over ``MAX_REQUEST_BYTES``, before anything parses it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.MAX_REQUEST_BYTES
        if length > limit:
            if length <= _DRAIN_LIMIT:
                stream = request.META.get("wsgi.input")
                remaining = length
                while stream is not None and remaining > 0:
                    chunk = stream.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            response = JsonResponse(
                {"errors": [{"message": f"request body is {length:,} bytes; the limit is {limit:,}"}]}, status=413
            )
            if length > _DRAIN_LIMIT:
                response["Connection"] = "close"
            return response
        return self.get_response(request)


class RequestMetricsMiddleware:
    """Records each request's latency by URL route (the pattern, never the path, so ids do not multiply the
    series), method and status class; first in the chain, so a 413 or a redirect is measured too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        metrics.request_observe(route=route, method=request.method or "", status=response.status_code,
                                seconds=time.perf_counter() - started)
        return response
