"""Endpoints for projects, members, users, examples (bulk import in batches, streamed export) and production
samples and predictions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast

from relabel_client import errors
from relabel_client.rows import EXAMPLE_FIELDS, SAMPLE_FIELDS, as_rows, batches, label_body
from relabel_client.transport import Transport, progress_bar
from relabel_client.types import (
    Annotation,
    Example,
    ExportFormat,
    ImportResult,
    Member,
    PredictResult,
    Project,
    Role,
    SamplesResult,
    Task,
)

# The server's limits per request (docs/api.md).
MAX_IMPORT_ROWS = 10_000
MAX_SAMPLES = 1_000
MAX_PREDICT_TEXTS = 256


class ProjectEndpoints(Transport):
    """Projects, their members and examples, and production samples."""

    # --- users -------------------------------------------------------------------------------------------
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

    def import_labelstudio(self, project_id: int, tasks: list[dict[str, Any]]) -> ImportResult:
        """Import a Label Studio JSON export (a list of tasks with ``data.text``, annotations' choices mapped to
        the project's labels), all or nothing; errors name the task. ``export_to(..., format="labelstudio")``
        writes the same format."""
        return self._json("POST", f"projects/{project_id}/examples/", params={"format": "labelstudio"}, body=tasks)

    def _upload(self, path: str, rows: Any, fields: tuple[str, ...], size: int,
                metadata_columns: str | list[str], progress: bool | None, what: str) -> Iterator[dict[str, Any]]:
        total = len(rows) if hasattr(rows, "__len__") else None
        bar = progress_bar(progress, total=total, desc=what, unit="row")
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
        body = label_body(label, labels)
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
