"""The client's transport: one session with the server, authentication (a token, or a browser-like session
with Django's CSRF token), retries on 429/503, errors that carry the API's error list, and pages."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Self
from urllib.parse import urljoin

import requests

from relabel_client import errors
from relabel_client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

MAX_PAGE_SIZE = 1_000
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_BODY = object()


def _api_root(url: str) -> tuple[str, str]:
    """(site root, API root) from either ``http://host:8000`` or ``http://host:8000/api/v1/``."""
    url = url.rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url + "/", url + "/api/v1/"


def progress_bar(enabled: bool | None, **kwargs: Any) -> Any:
    """A tqdm bar, or None when disabled or tqdm is not installed (``enabled=None``: use it if installed)."""
    if enabled is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if enabled:
            raise ImportError("progress bars need tqdm: pip install 'relabel-client[progress]'") from None
        return None
    return tqdm(**kwargs)


class Transport:
    """A session with one Relabel server: see :class:`relabel_client.Client` for the parameters."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        auth: Literal["token", "session"] = "token",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if auth not in ("token", "session"):
            raise ValueError("auth must be 'token' or 'session'")
        if auth == "session" and not (username and password):
            raise ValueError("session auth needs a username and a password")
        self.site, self.api = _api_root(url)
        self.token = token
        self.username = username
        self._password = password
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.http = session or requests.Session()
        self.http.headers.setdefault("Accept", "application/json")
        self._sleep = sleep
        self._logged_in = False

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """A client from ``RELABEL_URL`` (default ``http://127.0.0.1:8000``), ``RELABEL_TOKEN`` or
        ``RELABEL_USERNAME`` and ``RELABEL_PASSWORD``; keyword arguments win over the environment."""
        options: dict[str, Any] = {
            "token": os.environ.get("RELABEL_TOKEN") or None,
            "username": os.environ.get("RELABEL_USERNAME") or None,
            "password": os.environ.get("RELABEL_PASSWORD") or None,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        url = options.pop("url", None) or os.environ.get("RELABEL_URL") or "http://127.0.0.1:8000"
        return cls(url, **options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = _NO_BODY,
        authenticated: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """Send one request to ``path`` (relative to the API root), retrying on 429/503 as ``self.retry``
        says; an error status raises the matching :class:`~relabel_client.errors.APIError`."""
        method = method.upper()
        url = urljoin(self.api, path.lstrip("/"))
        if authenticated:
            self._authenticate()
        data = None
        headers: dict[str, str] = {}
        if body is not _NO_BODY:
            # allow_nan=False: NaN is not JSON; better to hear it here than as the server's 400.
            data = json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if authenticated and self.auth == "token" and self.token:
            headers["Authorization"] = f"Token {self.token}"
        if authenticated and self.auth == "session" and method in _UNSAFE:
            headers["X-CSRFToken"] = self.http.cookies.get("csrftoken") or ""
            headers["Referer"] = self.site
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                response = self.http.request(method, url, params=query, data=data, headers=headers,
                                             timeout=self.timeout, stream=stream)
            except requests.RequestException as error:
                delay = self.retry.delay(attempt) if method == "GET" else None
                if delay is None:
                    raise errors.TransportError(f"{method} {url}: {error}") from error
                self._sleep(delay)
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES:
                delay = self.retry.delay(attempt, response.headers)
                if delay is not None:
                    response.close()
                    self._sleep(delay)
                    attempt += 1
                    continue
            if response.status_code >= 400:
                raise self._error(response, method, url)
            return response

    def _error(self, response: requests.Response, method: str, url: str) -> errors.APIError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return errors.error_for(response.status_code, body, method=method, url=url,
                                retry_after=parse_retry_after(response.headers.get("Retry-After")))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise errors.TransportError(f"{method} {path}: the answer is not JSON: {response.text[:200]!r}") from error

    def _pages(self, path: str, params: dict[str, Any] | None = None, *, page_size: int = 100,
               inner: Callable[[Any], Any] | None = None) -> Iterator[Any]:
        """Every result of a paginated list, page after page (``inner`` finds the page in a larger answer,
        e.g. the noise report's ``issues``). Page numbers are counted here rather than following ``next``,
        whose host is the one the server saw (wrong behind a proxy that rewrites it)."""
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        number = 1
        while True:
            body = self._json("GET", path, params={**(params or {}), "page": number, "page_size": page_size})
            page = inner(body) if inner else body
            if not page:
                return
            yield from page.get("results") or []
            if not page.get("next"):
                return
            number += 1

    def _authenticate(self) -> None:
        if self.auth == "token":
            if self.token is None and self.username and self._password:
                self.token = self.obtain_token(self.username, self._password)
        elif not self._logged_in:
            self.login()

    # --- authentication ------------------------------------------------------------------------------
    def obtain_token(self, username: str, password: str) -> str:
        """``POST /auth/token/``: the user's API token (created on first use)."""
        return str(self._json("POST", "auth/token/", body={"username": username, "password": password},
                              authenticated=False)["token"])

    def revoke_token(self) -> None:
        """``POST /auth/token/revoke/``: delete the caller's token (a new one is made on the next login)."""
        self._json("POST", "auth/token/revoke/")
        if self.auth == "token":
            self.token = None

    def login(self) -> None:
        """Log in at ``/login/`` with a session cookie, as a browser does (``auth="session"``)."""
        login_url = urljoin(self.site, "login/")
        try:
            form = self.http.get(login_url, timeout=self.timeout)
            match = _CSRF_INPUT.search(form.text)
            response = self.http.post(
                login_url, timeout=self.timeout, allow_redirects=False, headers={"Referer": login_url},
                data={"username": self.username, "password": self._password,
                      "csrfmiddlewaretoken": match.group(1) if match else ""},
            )
        except requests.RequestException as error:
            raise errors.TransportError(f"POST {login_url}: {error}") from error
        if response.status_code != 302 or "sessionid" not in self.http.cookies:
            raise errors.Unauthenticated(401, {"errors": [{"message": "login failed: wrong username or password"}]},
                                         method="POST", url=login_url)
        self._logged_in = True
