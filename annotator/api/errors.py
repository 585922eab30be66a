"""Every API error answers ``{"errors": [{"index"?, "field"?, "message"}]}`` (API.md conventions)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DataError
from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotator.errors import ServiceError

log = logging.getLogger(__name__)


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = key if field is None else f"{field}.{key}"
            out.extend(_flatten(value, None if key == "non_field_errors" else name))
        return out
    if isinstance(detail, list):
        out = []
        for i, value in enumerate(detail):
            if isinstance(value, dict | list) and not isinstance(value, exceptions.ErrorDetail):
                for error in _flatten(value, field):
                    error.setdefault("index", i)
                    out.append(error)
            else:
                out.extend(_flatten(value, field))
        return out
    error: dict[str, Any] = {"message": str(detail)}
    if field:
        error["field"] = field
    return [error]


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _nul_in_request(context: dict[str, Any]) -> bool:
    request = context.get("request")
    if request is None:
        return False
    try:
        data = request.data
    except Exception:  # noqa: BLE001 - an unreadable body holds no NUL we could blame
        data = None
    return _has_nul(dict(request.query_params.lists())) or _has_nul(data)


def errors_response(errors: list[dict[str, Any]], status_code: int, **extra: Any) -> Response:
    return Response({"errors": errors, **extra}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return errors_response(exc.errors, exc.status_code, **exc.extra)
    if isinstance(exc, RequestDataTooBig):
        return errors_response([{"message": str(exc) or "request body too large"}], status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DataError) and _nul_in_request(context):
        # PostgreSQL stores no NUL character; fields the services do not check one by one end up here.
        return errors_response([{"message": "text must not contain NUL characters (\\u0000)"}],
                               status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return errors_response([{"message": f"malformed JSON: {exc.detail}"}], status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("not found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    response.data = {"errors": _flatten(detail) or [{"message": "error"}]}
    return response


def not_found(request: Any, exception: Exception | None = None) -> HttpResponse:
    """A URL that matches no route (``/api/v1/projects/abc/``) answers in the API's error shape under
    /api/, and with the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"errors": [{"message": "not found"}]}, status=404)
    return page_not_found(request, exception)


def server_error(request: Any, *args: Any, **kwargs: Any) -> JsonResponse:
    log.error("unhandled error on %s", request.path)
    return JsonResponse({"errors": [{"message": "internal error; nothing was changed"}]}, status=500)
