"""What bench/loop.py measures of one train cycle: the stages of the train job, scoring and the rebuild; the
pool embedded in the background after an import; labels given through the queue between cycles; pushes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import requests

# The train job's stages in the order it runs them (the timings come back from a jsonb column, unordered).
STAGES = ["snapshot", "loading", "split", "preparing", "embedding", "training", "evaluating", "calibrating",
          "noise", "health", "saving", "promotion", "done"]


def wait_job(session: requests.Session, base: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = session.get(f"{base}/api/v1/jobs/{job_id}/").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def run_cycle(admin: requests.Session, base: str, pid: int, mode: str) -> dict[str, Any]:
    """Ask for a retrain and wait until the queue is rebuilt (the train job succeeds only then): the whole
    time, each stage of the train job, the scoring job (and its time per 10,000 texts) and the rebuild."""
    from annotator.models import Job

    t0 = time.perf_counter()
    job = admin.post(f"{base}/api/v1/projects/{pid}/train/", json={"mode": mode}).json()["job"]
    final = wait_job(admin, base, job["id"], timeout=5400)
    total = time.perf_counter() - t0
    assert final["status"] == "succeeded", final
    score_job = Job.objects.get(parent_id=job["id"], kind="score")
    rebuild_job = Job.objects.get(parent_id=job["id"], kind="queue_rebuild")
    stages = dict(sorted(((k, v) for k, v in final["timings"].items() if k != "total_s"),
                         key=lambda kv: STAGES.index(kv[0][:-2]) if kv[0][:-2] in STAGES else len(STAGES)))
    scoring_s = score_job.timings.get("total_s")
    stages["scoring (Celery, chunks)_s"] = scoring_s
    stages["queue rebuild_s"] = rebuild_job.timings.get("total_s")
    scored = int(score_job.params["examples"])
    return {"total_s": total, "stages": stages, "mode": final["result"].get("mode"),
            "model_version": final["result"]["model_version"], "scored": scored,
            "chunks": int(score_job.params["chunks"]),
            "scoring_s_per_10k": scoring_s / scored * 10_000 if scored and scoring_s else None}


def wait_embedded(cache_file: Path, fingerprint: str, n: int, timeout: float) -> float:
    """Seconds until the embedding cache holds ``n`` vectors of ``fingerprint`` (the background embedding
    that every import sends to the scoring workers)."""
    from training.embedding_cache import EmbeddingCache

    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cache_file.exists() and EmbeddingCache(cache_file).count(fingerprint) >= n:
            return time.perf_counter() - t0
        time.sleep(1.0)
    raise TimeoutError(f"the pool was not embedded in {timeout:.0f} s")


def label_through_queue(session: requests.Session, base: str, pid: int, n: int, truth: dict[str, str]) -> int:
    """Lease ``n`` items and answer each with its true label (an annotator working the queue)."""
    answered = 0
    while answered < n:
        items = session.get(f"{base}/api/v1/projects/{pid}/queue/next/", params={"n": min(50, n - answered)}).json()
        if not items:
            break
        for item in items:
            label = truth.get(item["example"]["text"])
            if label is None:
                session.post(f"{base}/api/v1/queue/{item['id']}/skip/")
                continue
            r = session.post(f"{base}/api/v1/queue/{item['id']}/submit/", json={"label": label})
            assert r.status_code == 201, r.text[:300]
            answered += 1
    return answered


def push_rate(session: requests.Session, base: str, pid: int, texts: list[str], batch: int = 100) -> dict:
    """Production pushes of ``batch`` texts per request, one request at a time: samples per second."""
    t0 = time.perf_counter()
    for start in range(0, len(texts), batch):
        r = session.post(f"{base}/api/v1/projects/{pid}/samples/",
                         json=[{"text": t} for t in texts[start:start + batch]], timeout=600)
        assert r.status_code == 201 and r.json()["predictions"], r.text[:300]
    return {"samples_per_s": len(texts) / (time.perf_counter() - t0), "batch": batch, "samples": len(texts)}


class Background(threading.Thread):
    """Run ``target`` in a thread and keep its result (a push loop beside the queue clients)."""

    def __init__(self, target: Any, *args: Any) -> None:
        super().__init__(daemon=True)
        self._call = (target, args)
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        target, args = self._call
        try:
            self.result = target(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised by value()
            self.error = error

    def value(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.result
