"""Endpoints of the loop: the annotation queue, training jobs, model versions, label noise, data health
and drift."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

from relabel_client import errors
from relabel_client.rows import label_body
from relabel_client.transport import Transport, progress_bar
from relabel_client.types import (
    FINISHED,
    Annotation,
    Job,
    ModelVersion,
    NoiseDecision,
    QueueItem,
    QueueStats,
    TrainMode,
)


class LoopEndpoints(Transport):
    """The queue, training and jobs, model versions, label noise, data health and drift."""

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
        body = label_body(label, labels)
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
        bar = progress_bar(progress, total=100, desc=f"job {job_id}", unit="%",
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
        body: dict[str, Any] = {"example_ids": list(example_ids), **label_body(label, labels)}
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

    # --- the team ------------------------------------------------------------------------------------------
    def team(self, project_id: int) -> dict[str, Any]:
        """How each person labels (reviewers and admins): answers by kind, median seconds per item, agreement
        with the consensus and with each other (Cohen's and Fleiss' kappa), CROWDLAB quality, labels changed
        by review."""
        return self._json("GET", f"projects/{project_id}/team/")
