"""Exceptions of the client. An API error carries the server's answer: the HTTP status, a short code and the
``{"errors": [{"index"?, "field"?, "message"}]}`` list every error of the API has."""

from __future__ import annotations

from typing import Any

CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    429: "throttled",
    503: "unavailable",
}


class RelabelError(Exception):
    """Anything this client raises on purpose."""


class TransportError(RelabelError):
    """The server could not be reached, or its answer could not be read (after the retries)."""


class APIError(RelabelError):
    """The API answered with an error status.

    Attributes
    ----------
    status: the HTTP status (400, 404, 409, ...).
    code: a short name for it (``invalid``, ``not_found``, ``conflict``, ...; ``server_error`` for 5xx).
    errors: the API's error list, each ``{"message", "field"?, "index"?}``; for a batched upload the indices
        count rows of the whole input, not of the failing batch.
    field, index, message: those of the first error (``None`` when it has none).
    body: the whole decoded answer (a 409 on train names the running ``job`` there), or the text when it
        was not JSON.
    retry_after: seconds the server asked to wait (429/503), when it said.
    rows_written: for batched uploads, rows of earlier batches that were stored before this one failed.
    """

    def __init__(self, status: int, body: Any, *, method: str = "", url: str = "",
                 retry_after: float | None = None) -> None:
        self.status = status
        self.code = CODES.get(status, "server_error" if status >= 500 else "error")
        self.body = body
        errors = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(errors, list) or not errors:
            text = body if isinstance(body, str) and body.strip() else f"HTTP {status}"
            errors = [{"message": text[:500]}]
        self.errors: list[dict[str, Any]] = [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
        self.method = method
        self.url = url
        self.retry_after = retry_after
        self.rows_written = 0
        super().__init__(self._describe())

    @property
    def field(self) -> str | None:
        return self.errors[0].get("field")

    @property
    def index(self) -> int | None:
        return self.errors[0].get("index")

    @property
    def message(self) -> str:
        return str(self.errors[0].get("message", ""))

    def offset_rows(self, offset: int) -> None:
        """Make row indices count from the start of the caller's input (the batch started at ``offset``)."""
        for error in self.errors:
            if isinstance(error.get("index"), int):
                error["index"] += offset
        self.rows_written = offset
        self.args = (self._describe(),)

    def _describe(self) -> str:
        parts = []
        for error in self.errors[:5]:
            where = []
            if error.get("index") is not None:
                where.append(f"row {error['index']}")
            if error.get("field"):
                where.append(str(error["field"]))
            parts.append(f"{' '.join(where)}: {error.get('message', '')}" if where else str(error.get("message", "")))
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        request = f" ({self.method} {self.url})" if self.method else ""
        return f"{self.status} {self.code}{request}: " + "; ".join(parts) + more


class InvalidRequest(APIError):
    """400: the request was refused and nothing was written (a bulk request names every bad row)."""


class Unauthenticated(APIError):
    """401: no token, a wrong one, or a revoked one."""


class Forbidden(APIError):
    """403: the caller's role does not allow this."""


class NotFound(APIError):
    """404: no such object, or one the caller may not see."""


class Conflict(APIError):
    """409: e.g. a training already queued or running (``body["job"]``), a lost lease, no serving version."""


class TooLarge(APIError):
    """413: the request body is over the server's limit (10 MB); send smaller batches."""


class Throttled(APIError):
    """429 after the retries: too many requests."""


class Unavailable(APIError):
    """503 after the retries: the database or the serving model is not usable right now."""


class ServerError(APIError):
    """Any other 5xx."""


class JobFailed(RelabelError):
    """A job waited on ended ``failed`` or ``cancelled``; ``job`` is its last state."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        detail = job.get("error") or job.get("message") or ""
        super().__init__(f"job {job.get('id')} {job.get('status')}" + (f": {detail}" if detail else ""))


class JobTimeout(RelabelError):
    """``wait_for_job`` gave up before the job ended; ``job`` is its last state."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.get('id')} still {job.get('status')} after {timeout:g} s "
                         f"(stage {job.get('stage') or '-'}, progress {job.get('progress', 0):.0%})")


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest, 401: Unauthenticated, 403: Forbidden, 404: NotFound, 409: Conflict, 413: TooLarge,
    429: Throttled, 503: Unavailable,
}


def error_for(status: int, body: Any, **kwargs: Any) -> APIError:
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(status, body, **kwargs)
