"""A client for the Relabel REST API v1 (docs/api.md): one method per endpoint, lists as iterators over
every page, bulk uploads in batches, retries on 429/503, and errors that carry the API's error list."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast
from urllib.parse import urljoin

import requests

from relabel_client import errors
from relabel_client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from relabel_client.rows import EXAMPLE_FIELDS, SAMPLE_FIELDS, as_rows, batches
from relabel_client.types import (
    FINISHED,
    Annotation,
    Example,
    ExportFormat,
    ImportResult,
    Job,
    Member,
    ModelVersion,
    NoiseDecision,
    PredictResult,
    Project,
    QueueItem,
    QueueStats,
    Role,
    SamplesResult,
    Task,
    TrainMode,
)

__all__ = ["Client"]

# The server's limits per request (docs/api.md).
MAX_IMPORT_ROWS = 10_000
MAX_SAMPLES = 1_000
MAX_PREDICT_TEXTS = 256
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


def _progress_bar(enabled: bool | None, **kwargs: Any) -> Any:
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


class Client:
    """A session with one Relabel server.

    Parameters
    ----------
    url: the server (``http://127.0.0.1:8000``) or its API root (``.../api/v1/``).
    token: an API token (``Authorization: Token <key>``).
    username, password: used instead of a token: with ``auth="token"`` (default) the client asks
        ``POST /auth/token/`` for the user's token on its first request; with ``auth="session"`` it logs in
        at ``/login/`` like a browser and sends Django's CSRF token with every write.
    timeout: seconds for each HTTP request (connect and read).
    retry: when to send a request again after a 429 or 503 (:class:`RetryPolicy`); ``RetryPolicy(max_retries=0)``
        turns retries off.
    sleep: how to wait between retries (tests pass a recorder).
    """

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
    def from_env(cls, **overrides: Any) -> Client:
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

    def __enter__(self) -> Client:
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

    # --- auth and users ------------------------------------------------------------------------------
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

    def health(self) -> dict[str, Any]:
        """``GET /health/`` (no auth): ``{"status", "database", "broker"}``. A degraded server answers 503,
        which is retried and then raised as :class:`~relabel_client.errors.Unavailable`."""
        return cast(dict[str, Any], self._json("GET", "health/", authenticated=False))

    def create_user(self, username: str, password: str, email: str | None = None) -> dict[str, Any]:
        """``POST /users/`` (staff only)."""
        body = {"username": username, "password": password, **({"email": email} if email else {})}
        return cast(dict[str, Any], self._json("POST", "users/", body=body))

    # --- projects and members ----------------------------------------------------------------------------
    def list_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        """Projects the caller is a member of, every page."""
        return self._pages("projects/", page_size=page_size)

    def get_project(self, project_id: int) -> Project:
        return cast(Project, self._json("GET", f"projects/{project_id}/"))

    def create_project(self, name: str, labels: list[str], *, task: Task = "single_label",
                       settings: dict[str, Any] | None = None) -> Project:
        """``POST /projects/``; the caller becomes the project's admin."""
        body: dict[str, Any] = {"name": name, "task": task, "labels": labels}
        if settings is not None:
            body["settings"] = settings
        return cast(Project, self._json("POST", "projects/", body=body))

    def update_settings(self, project_id: int, settings: dict[str, Any]) -> Project:
        """``PATCH /projects/{id}/`` (admin): change some settings; a bad value is a 400 naming the field."""
        return cast(Project, self._json("PATCH", f"projects/{project_id}/", body={"settings": settings}))

    def list_members(self, project_id: int) -> list[Member]:
        """Members, roles and CROWDLAB quality (reviewer)."""
        return cast(list[Member], self._json("GET", f"projects/{project_id}/members/"))

    def add_member(self, project_id: int, username: str, role: Role) -> Member:
        """Add a member or change a member's role (admin)."""
        return cast(Member, self._json("POST", f"projects/{project_id}/members/",
                                       body={"username": username, "role": role}))

    def remove_member(self, project_id: int, username: str) -> None:
        """Remove a member (admin); a project keeps at least one admin."""
        self._json("DELETE", f"projects/{project_id}/members/", body={"username": username})

    # --- examples ------------------------------------------------------------------------------------------
    def import_examples(
        self,
        project_id: int,
        rows: Any,
        *,
        batch_size: int = 1_000,
        metadata_columns: str | list[str] = "rest",
        progress: bool | None = False,
    ) -> ImportResult:
        """Bulk import from an iterable of dicts (or texts) or a pandas DataFrame, ``batch_size`` rows per
        request (at most 10,000).

        Each batch is all or nothing on the server. When one fails the error's row indices count from the
        start of ``rows`` and ``error.rows_written`` says how many rows earlier batches stored; importing
        again after fixing the row is safe, since the import is idempotent on ``external_id`` (and texts
        without one are matched by their hash). DataFrame columns that are not row fields go into
        ``metadata`` (``metadata_columns="rest"``), only the named ones (a list), or nowhere (``[]``);
        missing cells are left out.
        """
        total: ImportResult = {"created": 0, "unchanged": 0, "updated": 0, "ids": []}
        size = min(batch_size, MAX_IMPORT_ROWS)
        for result in self._upload(f"projects/{project_id}/examples/", rows, EXAMPLE_FIELDS, size,
                                   metadata_columns, progress, "import"):
            for key in ("created", "unchanged", "updated"):
                total[key] += int(result.get(key) or 0)  # type: ignore[literal-required]
            total["ids"].extend(result.get("ids") or [])
        return total

    def _upload(self, path: str, rows: Any, fields: tuple[str, ...], size: int,
                metadata_columns: str | list[str], progress: bool | None, what: str) -> Iterator[dict[str, Any]]:
        total = len(rows) if hasattr(rows, "__len__") else None
        bar = _progress_bar(progress, total=total, desc=what, unit="row")
        offset = 0
        try:
            for batch in batches(as_rows(rows, fields=fields, metadata_columns=metadata_columns), size):
                try:
                    result = self._json("POST", path, body=batch)
                except errors.APIError as error:
                    error.offset_rows(offset)
                    raise
                offset += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                yield result
        finally:
            if bar is not None:
                bar.close()

    def list_examples(
        self,
        project_id: int,
        *,
        source: str | None = None,
        labeled: bool | None = None,
        label: str | None = None,
        q: str | None = None,
        page_size: int = 500,
    ) -> Iterator[Example]:
        """Every example matching the filters (reviewer), page after page."""
        params = {"source": source, "label": label, "q": q,
                  "labeled": None if labeled is None else str(labeled).lower()}
        return self._pages(f"projects/{project_id}/examples/", params, page_size=page_size)

    def get_example(self, example_id: int) -> Example:
        """The example with its full annotation history and latest scores."""
        return cast(Example, self._json("GET", f"examples/{example_id}/"))

    def annotate(self, example_id: int, *, label: str | None = None, labels: list[str] | None = None,
                 note: str | None = None, kind: Literal["label", "relabel", "review"] | None = None) -> Annotation:
        """``POST /examples/{id}/annotations/`` (reviewer): label an example directly."""
        body = _label_body(label, labels)
        if note:
            body["note"] = note
        if kind:
            body["kind"] = kind
        return cast(Annotation, self._json("POST", f"examples/{example_id}/annotations/", body=body))

    def export_lines(self, project_id: int, *, format: ExportFormat = "jsonl") -> Iterator[bytes]:
        """The streamed export, line by line as bytes (each ending in a newline; CSV starts with its header)."""
        response = self.request("GET", f"projects/{project_id}/export/", params={"format": format}, stream=True)
        rest = b""
        with response:
            # Split on "\n" only: a CSV cell or a JSON string may hold "\r" or other line separators.
            for chunk in response.iter_content(64 * 1024):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    yield line + b"\n"
        if rest:
            yield rest

    def export_rows(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every example as the JSONL export writes it: labels, metadata and the annotation history."""
        for line in self.export_lines(project_id, format="jsonl"):
            if line.strip():
                yield json.loads(line)

    def export_to(self, project_id: int, destination: str | Path | IO[bytes], *,
                  format: ExportFormat = "jsonl") -> int:
        """Stream the export into a file (a path, or a file opened in binary mode); returns bytes written."""
        response = self.request("GET", f"projects/{project_id}/export/", params={"format": format}, stream=True)
        written = 0
        with response:
            if isinstance(destination, str | Path):
                with open(destination, "wb") as handle:
                    for chunk in response.iter_content(64 * 1024):
                        written += handle.write(chunk)
            else:
                for chunk in response.iter_content(64 * 1024):
                    destination.write(chunk)
                    written += len(chunk)
        return written

    # --- production samples and predictions ----------------------------------------------------------------
    def push_samples(self, project_id: int, rows: Any, *, batch_size: int = MAX_SAMPLES,
                     metadata_columns: str | list[str] = "rest", progress: bool | None = False) -> SamplesResult:
        """Push production samples (reviewer) from an iterable of dicts or texts, or a DataFrame, in batches
        of at most 1,000. ``predictions`` has one entry per row (``None`` for rows pushed while no version
        served), or is ``None`` when no batch got predictions."""
        out: SamplesResult = {"ids": [], "created": 0, "unchanged": 0, "model_version": None, "predictions": None}
        predictions: list[Any] = []
        size = min(batch_size, MAX_SAMPLES)
        for result in self._upload(f"projects/{project_id}/samples/", rows, SAMPLE_FIELDS, size,
                                   metadata_columns, progress, "push"):
            ids = result.get("ids") or []
            out["ids"].extend(ids)
            out["created"] += int(result.get("created") or 0)
            out["unchanged"] += int(result.get("unchanged") or 0)
            out["model_version"] = result.get("model_version")
            batch_predictions = result.get("predictions")
            predictions.extend(batch_predictions if batch_predictions is not None else [None] * len(ids))
        if any(p is not None for p in predictions):
            out["predictions"] = predictions
        return out

    def predict(self, project_id: int, texts: Iterable[str]) -> PredictResult:
        """Predict with the serving version, 256 texts per request (409 :class:`Conflict` when none serves)."""
        out: PredictResult = {"model_version": 0, "predictions": []}
        for batch in batches(({"text": t} for t in texts), MAX_PREDICT_TEXTS):
            result = self._json("POST", f"projects/{project_id}/predict/", body={"texts": [r["text"] for r in batch]})
            out["model_version"] = result["model_version"]
            out["predictions"].extend(result["predictions"])
        return out

    # --- the queue -------------------------------------------------------------------------------------------
    def queue_stats(self, project_id: int) -> QueueStats:
        """Counts by status and reason, the effective mix, the strategy and whether it is a cold start."""
        return cast(QueueStats, self._json("GET", f"projects/{project_id}/queue/"))

    def queue_next(self, project_id: int, n: int = 10) -> list[QueueItem]:
        """Lease up to ``n`` (1-100) items to the caller; an empty list when nothing is pending."""
        return cast(list[QueueItem], self._json("GET", f"projects/{project_id}/queue/next/", params={"n": n}))

    def submit(self, item_id: int, *, label: str | None = None, labels: list[str] | None = None,
               note: str | None = None) -> Annotation:
        """Answer a leased item (409 :class:`Conflict` when the lease was lost)."""
        body = _label_body(label, labels)
        if note:
            body["note"] = note
        return cast(Annotation, self._json("POST", f"queue/{item_id}/submit/", body=body))

    def skip(self, item_id: int) -> dict[str, Any]:
        """Release a leased item (the caller is not offered it again for 30 minutes)."""
        return cast(dict[str, Any], self._json("POST", f"queue/{item_id}/skip/"))

    def heartbeat(self, item_id: int) -> dict[str, Any]:
        """Renew a lease: ``{"id", "lease_expires_at"}``."""
        return cast(dict[str, Any], self._json("POST", f"queue/{item_id}/heartbeat/"))

    # --- training and jobs -------------------------------------------------------------------------------
    def train(self, project_id: int, *, mode: TrainMode | None = None, seeds: int | None = None,
              reuse_running: bool = False) -> Job:
        """Start a training (reviewer) and return its job. With a training already queued or running the
        server answers 409: :class:`Conflict` (its ``body["job"]`` is that job), or, with
        ``reuse_running=True``, that job is returned instead."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = mode
        if seeds is not None:
            body["seeds"] = seeds
        try:
            return cast(Job, self._json("POST", f"projects/{project_id}/train/", body=body)["job"])
        except errors.Conflict as conflict:
            if reuse_running and isinstance(conflict.body, dict) and isinstance(conflict.body.get("job"), dict):
                return cast(Job, conflict.body["job"])
            raise

    def get_job(self, job_id: int) -> Job:
        """Status, progress (never decreasing), stage, message, result, timings, log tail and error."""
        return cast(Job, self._json("GET", f"jobs/{job_id}/"))

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a queued job at once or a running one at its next check (reviewer)."""
        return cast(Job, self._json("POST", f"jobs/{job_id}/cancel/"))

    def list_jobs(self, project_id: int, *, page_size: int = 100) -> Iterator[Job]:
        """The project's jobs, newest first."""
        return self._pages(f"projects/{project_id}/jobs/", page_size=page_size)

    def wait_for_job(self, job: int | Job, *, poll_interval: float = 2.0, timeout: float | None = None,
                     progress: bool | None = None, raise_on_failure: bool = True) -> Job:
        """Poll a job until it ends and return its last state.

        ``progress``: a tqdm bar of the job's progress and stage (``None``: when tqdm is installed).
        A ``failed`` or ``cancelled`` job raises :class:`JobFailed` unless ``raise_on_failure=False``;
        :class:`JobTimeout` after ``timeout`` seconds. Transient 429/503 answers are retried as any request.
        """
        job_id = int(job["id"]) if isinstance(job, dict) else int(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(progress, total=100, desc=f"job {job_id}", unit="%",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        shown = 0
        try:
            while True:
                state = self.get_job(job_id)
                if bar is not None:
                    done = int(round(float(state.get("progress") or 0) * 100))
                    if done > shown:
                        bar.update(done - shown)
                        shown = done
                    bar.set_postfix_str(f"{state.get('status')} {state.get('stage') or ''}".strip())
                if state.get("status") in FINISHED:
                    if raise_on_failure and state.get("status") != "succeeded":
                        raise errors.JobFailed(dict(state))
                    return state
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.JobTimeout(dict(state), timeout or 0)
                wait = poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic()))
                self._sleep(wait)
        finally:
            if bar is not None:
                bar.close()

    # --- models ----------------------------------------------------------------------------------------
    def list_models(self, project_id: int, *, page_size: int = 100) -> Iterator[ModelVersion]:
        """Model versions, newest first, with holdout metrics, the promotion decision and stability (reviewer)."""
        return self._pages(f"projects/{project_id}/models/", page_size=page_size)

    def promote(self, model_id: int) -> ModelVersion:
        """Make a ready version (by its id, not its number) the serving one (reviewer)."""
        return cast(ModelVersion, self._json("POST", f"models/{model_id}/promote/"))

    def rollback(self, project_id: int, *, to_version: int | None = None) -> ModelVersion:
        """Serve an earlier version again: ``to_version`` (a version number), or by default the newest
        ready version older than the serving one. Raises :class:`RelabelError` when there is none."""
        versions = list(self.list_models(project_id))
        serving = next((v for v in versions if v.get("promoted")), None)
        ready = [v for v in versions if v.get("status") == "ready"]
        if to_version is not None:
            target = next((v for v in ready if v.get("number") == to_version), None)
            if target is None:
                raise errors.RelabelError(f"project {project_id} has no ready version {to_version}")
        else:
            if serving is None:
                raise errors.RelabelError(f"project {project_id} has no serving version to roll back from")
            older = [v for v in ready if v["number"] < serving["number"]]
            if not older:
                raise errors.RelabelError(f"no ready version older than v{serving['number']} to roll back to")
            target = max(older, key=lambda v: v["number"])
        return self.promote(target["id"])

    # --- label noise and data health ---------------------------------------------------------------------
    def noise_report(self, project_id: int, *, label: str | None = None, settled: bool = False,
                     page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """The report's header (noise rates, ``detector``, ``expected_errors``, ...) with one page of
        ``issues``; :meth:`noise_issues` iterates over all of them."""
        params = {"label": label, "settled": str(settled).lower(), "page": page, "page_size": page_size}
        return cast(dict[str, Any], self._json("GET", f"projects/{project_id}/noise-report/", params=params))

    def noise_issues(self, project_id: int, *, label: str | None = None, settled: bool = False,
                     page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every open (or, with ``settled=True``, settled) suspected label error, worst first."""
        return self._pages(f"projects/{project_id}/noise-report/",
                           {"label": label, "settled": str(settled).lower()}, page_size=page_size,
                           inner=lambda body: body.get("issues"))

    def noise_decisions(self, project_id: int, decisions: list[NoiseDecision]) -> dict[str, Any]:
        """Keep, relabel or send to the queue, up to 1,000 decisions, all or nothing (reviewer). Not batched:
        the server's all-or-nothing promise covers exactly one request."""
        return cast(dict[str, Any], self._json("POST", f"projects/{project_id}/noise-report/decisions/",
                                               body=list(decisions)))

    def conflicts(self, project_id: int, *, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """Conflicting near-duplicates: the header (``model_version``, ``threshold``, ...) and one page of groups."""
        return cast(dict[str, Any], self._json("GET", f"projects/{project_id}/noise-report/conflicts/",
                                               params={"page": page, "page_size": page_size}))

    def conflict_groups(self, project_id: int, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every open conflict group, best first."""
        return self._pages(f"projects/{project_id}/noise-report/conflicts/", page_size=page_size)

    def settle_conflict(self, project_id: int, example_ids: list[int], *, label: str | None = None,
                        labels: list[str] | None = None) -> dict[str, Any]:
        """Give every member of a group one label as a review decision, all or nothing (reviewer)."""
        body: dict[str, Any] = {"example_ids": list(example_ids), **_label_body(label, labels)}
        return cast(dict[str, Any], self._json("POST", f"projects/{project_id}/noise-report/conflicts/settle/",
                                               body=body))

    def data_health(self, project_id: int, *, page: int = 1, page_size: int = 50) -> dict[str, Any]:
        """Class health and outliers of the newest version with data health (reviewer); ``outliers.examples``
        is one page, :meth:`outliers` iterates over all of them."""
        return cast(dict[str, Any], self._json("GET", f"projects/{project_id}/health/",
                                               params={"page": page, "page_size": page_size}))

    def outliers(self, project_id: int, *, page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every listed outlier, most outlying first."""
        return self._pages(f"projects/{project_id}/health/", page_size=page_size,
                           inner=lambda body: (body.get("outliers") or {}).get("examples"))

    # --- drift ---------------------------------------------------------------------------------------------
    def drift_windows(self, project_id: int, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Drift windows of production samples, newest first, with their tests, reference and actions."""
        return self._pages(f"projects/{project_id}/drift/", page_size=page_size)


def _label_body(label: str | None, labels: list[str] | None) -> dict[str, Any]:
    if (label is None) == (labels is None):
        raise ValueError("give exactly one of label (single-label projects) or labels (multi-label)")
    return {"label": label} if label is not None else {"labels": list(labels or [])}
