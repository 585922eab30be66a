"""Errors the services raise; every interface (API, pages, commands) turns them into its own answer."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status_code = 400

    def __init__(self, errors: list[dict[str, Any]] | str, **extra: Any) -> None:
        if isinstance(errors, str):
            errors = [{"message": errors}]
        self.errors = errors
        self.extra = extra
        super().__init__("; ".join(_describe(e) for e in errors[:5]))


def _describe(error: dict[str, Any]) -> str:
    where = []
    if "line" in error:
        where.append(f"line {error['line']}")
    elif "index" in error:
        where.append(f"row {error['index']}")
    if "field" in error:
        where.append(str(error["field"]))
    return f"{' '.join(where)}: {error['message']}" if where else str(error["message"])


class InvalidInput(ServiceError):
    """400: the request cannot be carried out as given; nothing was written."""


class NotFound(ServiceError):
    """404: the object does not exist or the caller may not see it."""

    status_code = 404


class Forbidden(ServiceError):
    """403: the caller sees the project but their role does not allow this."""

    status_code = 403


class Conflict(ServiceError):
    """409: the state changed under the caller (lease lost, job already running...)."""

    status_code = 409


class Unavailable(ServiceError):
    """503: something the request needs on the server (the serving model's files) cannot be used."""

    status_code = 503
