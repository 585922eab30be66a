"""Frozen-mode rescoring at scale: a new version's head over a pool whose embeddings are stored.

    python bench/rescore.py [--pool 1000000] [--workers 1]

Against a scratch PostgreSQL database (BENCH_DATABASE_URL, default .../relabel_rescore_bench, re-created) and
Redis (BENCH_REDIS_URL, flushed), it
1. trains a real frozen-mode version (MiniLM, 50 short labeled texts) in this process and stores it as a ready
   ModelVersion of a project whose pool is --pool synthetic unlabeled examples (COPY);
2. stores a vector for every pool text in the embedding cache under that version's embedding key (what the
   embed tasks after an import, or an earlier version's scoring, leave there; random unit vectors here, so the
   setup does not take hours of MiniLM);
3. starts --workers Celery workers (scoring queue) and times the scoring job that ``start_scoring`` sends, from
   the first chunk sent to the last chunk saved (its own ``total_s``), plus the peak RSS of each worker;
4. checks that every pool example got a score of the version and none went through the encoder (the workers
   would have taken hours).
Prints a table and writes bench/results/rescore.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import BASE_ENV, celery_worker_command, migrate, recreate_database, setup_django  # noqa: E402

LABELS = ["business", "sports", "tech"]


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process and its children (Celery's pool processes), in MB."""
    total = 0.0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                     text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total = max(total, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (concurrency)")
    parser.add_argument("--json", default=str(ROOT / "bench/results/rescore.json"))
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_rescore_bench")
    recreate_database(url)
    artifacts = ROOT / "var" / "bench-rescore-artifacts"
    subprocess.run(["rm", "-rf", str(artifacts)], check=True)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": url, "REDIS_URL": redis_url, "ARTIFACT_DIR": str(artifacts),
           "EMBEDDING_CACHE_DIR": str(artifacts / "cache"), "EMBED_ON_IMPORT": "0"}
    subprocess.run(["redis-cli", "-n", redis_url.rsplit("/", 1)[1], "flushdb"], capture_output=True)
    migrate(env)
    setup_django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotator.models import Example, ExampleScore, Job, ModelVersion, Project
    from annotator.services.bulk import insert_rows
    from annotator.services.embeddings import embedding_cache
    from annotator.services.jobs import JobReporter, job_create
    from annotator.services.projects import project_create
    from annotator.services.scoring import start_scoring
    from annotator.serving import artifact_root, predictor_for, version_dir
    from training.artifacts import save_artifact
    from training.embedding_cache import text_key
    from training.encoder import EncoderConfig
    from training.train import TrainConfig, train_classifier

    results: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}",
                     "date": datetime.now(UTC).date().isoformat(), "pool": args.pool, "workers": args.workers}
    user = get_user_model().objects.create_superuser("bench", "", "bench-password")
    project = project_create(user=user, name="rescore bench", task="single_label", labels=LABELS,
                             settings={"max_length": 64})

    # 1. A real frozen-mode version, stored as the serving code expects.
    t0 = time.perf_counter()
    words = {"business": "shares profit market bank", "sports": "match goal team season", "tech": "software phone chip web"}
    texts = [f"{words[label]} report number {i}" for i in range(17) for label in LABELS]
    labels = [label for _ in range(17) for label in LABELS]
    model = train_classifier(texts[:40], labels[:40], LABELS, config=TrainConfig(
        mode="frozen", encoder=EncoderConfig(max_length=64), seed=0), val_texts=texts[40:], val_labels=labels[40:])
    def stored_version(number: int) -> tuple[Job, ModelVersion]:
        job = job_create(project=project, kind=Job.Kind.TRAIN, params={"mode": "frozen"})
        version = ModelVersion.objects.create(project=project, number=number, job=job, n_train=40, mode="frozen",
                                              status=ModelVersion.Status.TRAINING)
        directory = version_dir(version)
        directory.mkdir(parents=True)
        content_hash = save_artifact(model, directory / "model", metrics={})
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.READY, content_hash=content_hash,
            artifact_path=str((directory / "model").relative_to(artifact_root())))
        version.refresh_from_db()
        Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, result={"model_version_id": version.id})
        return job, version

    job, version = stored_version(1)
    results["version_s"] = time.perf_counter() - t0

    # 2. The pool and its stored vectors.
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    pool_texts = [f"pool example {i}: {words[LABELS[i % 3]]}" for i in range(args.pool)]
    for start in range(0, args.pool, 100_000):
        chunk = pool_texts[start:start + 100_000]
        insert_rows(Example, ["project_id", "external_id", "text", "text_hash", "source", "metadata", "created_at",
                              "label_source"],
                    [(project.id, f"p{start + i}", text, text_key(text), "import", {}, now, "")
                     for i, text in enumerate(chunk)])
    Project.objects.filter(pk=project.pk).update(example_count=args.pool)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotator_example")
    results["pool_insert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    key = predictor_for(version).embedding_key
    cache = embedding_cache()
    rng = np.random.default_rng(0)
    hidden = model.encoder.hidden_size
    for start in range(0, args.pool, 50_000):
        chunk = pool_texts[start:start + 50_000]
        vectors = rng.standard_normal((len(chunk), hidden)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cache.put_many(key, [text_key(t) for t in chunk], vectors)
    results["cache_fill_s"] = time.perf_counter() - t0
    results["cache_mb"] = cache.path.stat().st_size / 2**20

    # 3. The scoring jobs through Celery: v1 reads the embedding cache; v2 (the same encoder: a frozen-mode
    # retrain) reads v1's saved pool vectors by id.
    def score(job: Job, version: ModelVersion, worker_pid: int) -> dict:
        t0 = time.perf_counter()
        start_scoring(job, version, JobReporter(job))
        score_job = Job.objects.get(parent=job, kind=Job.Kind.SCORE)
        rss = 0.0
        while True:
            score_job.refresh_from_db()
            rss = max(rss, peak_rss_mb(worker_pid))
            if score_job.status in Job.FINISHED:
                break
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        assert score_job.status == Job.Status.SUCCEEDED, score_job.message
        scored = ExampleScore.objects.filter(model_version=version).count()
        assert scored == args.pool, f"{scored} of {args.pool} scored"
        return {"wall_s": wall, "chunks": score_job.params["chunks"], "scored": scored,
                "worker_peak_rss_mb": max(rss, peak_rss_mb(worker_pid)), "texts_per_s": args.pool / wall}

    worker = subprocess.Popen(celery_worker_command("rescore", queues="scoring", concurrency=args.workers),
                              cwd=ROOT, env=env)
    try:
        time.sleep(8)  # the worker's start
        results["from_cache"] = score(job, version, worker.pid)
        Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)  # no rebuild here: the next may start
        job2, version2 = stored_version(2)
        results["from_prior_version"] = score(job2, version2, worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    c, p = results["from_cache"], results["from_prior_version"]
    lines = [f"Frozen-mode rescoring ({results['machine']}, {results['date']}; {args.pool:,} stored embeddings, "
             f"{args.workers} Celery worker process(es))", "",
             "| measure | v1: vectors from the embedding cache | v2: vectors of v1 by id |", "| --- | ---: | ---: |",
             f"| scoring job, first chunk sent to last chunk saved (s) | {c['wall_s']:.1f} | {p['wall_s']:.1f} |",
             f"| chunks | {c['chunks']} | {p['chunks']} |",
             f"| texts per second | {c['texts_per_s']:,.0f} | {p['texts_per_s']:,.0f} |",
             f"| worker peak RSS (MB) | {c['worker_peak_rss_mb']:,.0f} | {p['worker_peak_rss_mb']:,.0f} |",
             "", f"Setup: pool insert {results['pool_insert_s']:.0f} s, cache fill {results['cache_fill_s']:.0f} s "
             f"({results['cache_mb']:,.0f} MB)."]
    print("\n".join(lines))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.json).with_suffix(".md").write_text(
        "## Frozen-mode rescoring over stored embeddings\n\n"
        f"Command: `python bench/rescore.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
