"""Every API error answers ``{"errors": [{"index"?, "field"?, "message"}]}`` (API.md conventions)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotator.errors import ServiceError
from annotator.text import unicode_problem

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


def _find_unstorable(value: Any) -> tuple[list[str | int], str] | None:
    """The path to the first string (key or value) that PostgreSQL cannot store, and why."""
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = unicode_problem(item)
            if problem:
                return path, problem
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and unicode_problem(key):
                    return [*path, key], f"has a key that {unicode_problem(key)}"
                stack.append(([*path, key], child))
        elif isinstance(item, list | tuple):
            stack.extend(([*path, i], child) for i, child in enumerate(item))
    return None


def _unstorable_in_request(context: dict[str, Any]) -> dict[str, Any] | None:
    """An error naming the request field that holds a NUL or a lone surrogate, if one does."""
    request = context.get("request")
    if request is None:
        return None
    try:
        data = request.data
    except Exception:  # noqa: BLE001 - an unreadable body holds nothing we could blame
        data = None
    query = {key: values[0] if len(values) == 1 else values for key, values in request.query_params.lists()}
    found = _find_unstorable(query) or _find_unstorable(data)
    if found is None:
        return None
    path, problem = found
    error: dict[str, Any] = {}
    if path and isinstance(path[0], int):
        error["index"], path = path[0], path[1:]
    name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    if name:
        error["field"] = name
    error["message"] = f"{name or 'the body'} {problem}"
    return error


def errors_response(errors: list[dict[str, Any]], status_code: int, **extra: Any) -> Response:
    return Response({"errors": errors, **extra}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return errors_response(exc.errors, exc.status_code, **exc.extra)
    if isinstance(exc, RequestDataTooBig):
        return errors_response([{"message": str(exc) or "request body too large"}], status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DataError | UnicodeEncodeError):
        # PostgreSQL stores no NUL character and the UTF-8 codec no lone surrogate; fields the services do
        # not check one by one end up here, before anything was written (the statement never ran or was
        # rolled back with its transaction).
        error = _unstorable_in_request(context)
        if error is not None:
            return errors_response([error], status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away under the request (a restart, a failover, a terminated backend): the
        # transaction it was in was rolled back, and the same request can simply be sent again.
        log.warning("database unavailable during %s: %s", getattr(context.get("request"), "path", "?"), exc)
        response = errors_response([{"message": "the database connection was lost; the unfinished write was "
                                                "rolled back. Send the request again."}], status.HTTP_503_SERVICE_UNAVAILABLE)
        response["Retry-After"] = "2"
        return response
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
