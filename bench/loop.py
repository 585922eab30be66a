"""Loop benchmark: one full cycle through Celery and PostgreSQL, the queue under load, production pushes.

    python bench/loop.py [--labeled 5000] [--unlabeled 50000] [--queue-items 1000000] [--clients 8]

Against a scratch PostgreSQL database (BENCH_DATABASE_URL, default .../relabel_loop_bench, re-created), it
starts gunicorn and one Celery worker (concurrency 1, all queues), then:
1. imports --labeled labeled + --unlabeled unlabeled texts (paragraphs of the BBC news corpus, made unique),
   trains (mode --mode, default frozen) and reports the time of every stage of the train job, the scoring
   job and the queue rebuild;
2. raw scoring throughput of training/ on the same version (load_artifact + predict + uncertainty scores, in
   this process) against the scoring throughput the Celery job achieved (texts/s; ratio);
3. queue next/submit latency: a second project with --queue-items pending items, --clients concurrent
   annotators (threads, one user each) leasing one item and submitting it, p50/p95/p99;
4. production push: POST /samples/ of 100 texts at a time with predictions, samples/s.
Prints a table and writes JSON (and a markdown section) under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loop_cycle import Background, label_through_queue, push_rate, run_cycle  # noqa: E402
from bench.stack import (  # noqa: E402
    BASE_ENV,
    celery_worker_command,
    gunicorn_command,
    migrate,
    recreate_database,
    setup_django,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bbc_paragraphs(n: int, seed: int) -> list[tuple[str, str]]:
    """n (text, label) pairs: BBC paragraphs of at least 80 characters, numbered to keep them unique."""
    from training.data import load_bbc_news

    texts, labels = load_bbc_news()
    paragraphs = [(p.strip(), label) for text, label in zip(texts, labels, strict=True)
                  for p in text.split("\n") if len(p.strip()) >= 80]
    rng = random.Random(seed)
    return [(f"{text} [{i}]", label) for i, (text, label) in
            enumerate(rng.choices(paragraphs, k=n))]


class Server:
    def __init__(self, env: dict[str, str], port: int, workers: int) -> None:
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.processes = [
            subprocess.Popen(gunicorn_command(port, workers), cwd=ROOT, env=env),
            subprocess.Popen(celery_worker_command(f"bench-{port}", beat=True), cwd=ROOT, env=env),
        ]
        for _ in range(200):
            try:
                if requests.get(f"{self.base}/api/v1/health/", timeout=5).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def session_for(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    token = session.post(f"{base}/api/v1/auth/token/", json={"username": username, "password": password}).json()["token"]
    session.headers["Authorization"] = f"Token {token}"
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labeled", type=int, default=5000)
    parser.add_argument("--unlabeled", type=int, default=50_000)
    parser.add_argument("--mode", default="frozen")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--queue-items", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50, help="next/submit pairs per client")
    parser.add_argument("--pace", type=float, default=0.5,
                        help="second queue run: one pair per PACE seconds per client (0 skips it)")
    parser.add_argument("--push-batches", type=int, default=20, help="100 samples each: half alone, half under load")
    parser.add_argument("--more-labels", type=int, default=50, help="answers through the queue between two cycles")
    parser.add_argument("--raw-texts", type=int, default=3000)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--queue-only", action="store_true", help="only the queue-under-load part")
    parser.add_argument("--json", default=str(ROOT / "bench/results/loop.json"))
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_loop_bench")
    recreate_database(url)
    artifacts = ROOT / "var" / "bench-loop-artifacts"
    subprocess.run(["rm", "-rf", str(artifacts)], check=True)
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": url,
           "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
           "ARTIFACT_DIR": str(artifacts), "EMBEDDING_CACHE_DIR": str(artifacts / "cache"),
           "THROTTLE_PUSH": "1000000/min"}
    migrate(env)
    setup_django(env)
    from django.contrib.auth import get_user_model

    from annotator.models import ModelVersion, Project
    from annotator.services.bulk import insert_rows
    from annotator.services.projects import member_set, project_create

    user_model = get_user_model()
    user_model.objects.create_superuser("bench", "", "bench-password")
    subprocess.run(["redis-cli", "-n", env["REDIS_URL"].rsplit("/", 1)[1], "flushdb"], capture_output=True)
    results: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}", "date": datetime.now(UTC).date().isoformat(),
                     "labeled": args.labeled, "unlabeled": args.unlabeled, "mode": args.mode}
    server = Server(env, args.port, args.web_workers)
    base = server.base
    try:
        admin = session_for(base, "bench", "bench-password")
        labels = ["business", "entertainment", "politics", "sports", "tech"]
        if not args.queue_only:
            project = admin.post(f"{base}/api/v1/projects/", json={
                "name": "loop bench", "task": "single_label", "labels": labels,
                "settings": {"max_length": args.max_length, "queue_size": 500, "drift_window_size": 200}}).json()
            pid = project["id"]
            data = bbc_paragraphs(args.labeled + args.unlabeled + args.push_batches * 100, seed=1)
            rows = [{"text": t, "external_id": f"l{i}", "label": lab, "source": "seed"}
                    for i, (t, lab) in enumerate(data[: args.labeled])]
            rows += [{"text": t, "external_id": f"u{i}"} for i, (t, _) in enumerate(data[args.labeled: args.labeled + args.unlabeled])]
            t0 = time.perf_counter()
            for start in range(0, len(rows), 10_000):
                r = admin.post(f"{base}/api/v1/projects/{pid}/examples/", json=rows[start:start + 10_000], timeout=600)
                assert r.status_code == 201, r.text[:300]
            results["import_s"] = time.perf_counter() - t0

            # First cycle, right after the import: the scoring workers embed the imported examples in the
            # background (services.embeddings) while the train job runs; then the pool is stored.
            results["cycle"] = run_cycle(admin, base, pid, args.mode)
            truth = {t: lab for t, lab in data[: args.labeled + args.unlabeled]}
            # Second cycle after --more-labels answers through the queue: the frozen encoder's pool is stored,
            # so the new version is its head over stored vectors.
            results["labels_between_cycles"] = label_through_queue(admin, base, pid, args.more_labels, truth)
            results["cycle2"] = run_cycle(admin, base, pid, args.mode)
            final = {"result": {"model_version": results["cycle2"]["model_version"]}}
            celery_rate = 10_000 / results["cycle"]["scoring_s_per_10k"]

            # Raw training/ scoring throughput on the same version, same kind of texts.
            from annotator.serving import artifact_root
            from training.artifacts import load_artifact
            from training.query import entropy_scores, margin_scores

            version = ModelVersion.objects.get(project_id=pid, number=final["result"]["model_version"])
            predictor = load_artifact(artifact_root() / version.artifact_path)
            texts = [t for t, _ in data[args.labeled: args.labeled + args.raw_texts]]
            predictor.predict(texts[:64], with_token_stats=False)  # warm-up
            t0 = time.perf_counter()
            prediction = predictor.predict(texts, with_token_stats=False)
            entropy_scores(prediction.probs)
            margin_scores(prediction.probs)
            raw_rate = len(texts) / (time.perf_counter() - t0)
            results["scoring"] = {"celery_texts_per_s_first_cycle": celery_rate, "raw_texts_per_s": raw_rate,
                                  "backend": predictor.backend}

            # Production push: 100 texts per request, with predictions, alone (the drift checks they send run
            # on the worker meanwhile); again below, beside the queue clients.
            push = [t for t, _ in data[args.labeled + args.unlabeled:]]
            half = len(push) // 2
            results["push"] = push_rate(admin, base, pid, push[:half])
            results["push"]["raw_ratio"] = results["push"]["samples_per_s"] / raw_rate

        # Queue under load: a second project with a million pending items.
        queue_project = project_create(user=user_model.objects.get(username="bench"), name="queue bench",
                                       task="single_label", labels=labels)
        n = args.queue_items
        t0 = time.perf_counter()
        example_ids: list[int] = []
        for start in range(0, n, 100_000):
            count = min(100_000, n - start)
            example_ids += insert_rows(
                __import__("annotator.models", fromlist=["Example"]).Example,
                ["project_id", "external_id", "text", "text_hash", "source", "metadata", "created_at", "label_source"],
                [(queue_project.id, f"q{start + i}", f"queued text {start + i}", f"{start + i:064x}", "import", {},
                  datetime.now(UTC), "") for i in range(count)],
            )
        from annotator.models import QueueItem

        rng = random.Random(2)
        for start in range(0, n, 100_000):
            chunk = example_ids[start:start + 100_000]
            insert_rows(QueueItem, ["project_id", "example_id", "reason", "priority", "slot", "status", "explanation",
                                    "created_at"],
                        [(queue_project.id, eid, "uncertain", rng.random(), 0, "pending", "", datetime.now(UTC))
                         for eid in chunk])
        Project.objects.filter(pk=queue_project.pk).update(example_count=n)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE annotator_queueitem")
            conn.execute("VACUUM ANALYZE annotator_example")
        results["queue_setup_s"] = time.perf_counter() - t0
        sessions = []
        for c in range(args.clients):
            name = f"annotator{c}"
            user_model.objects.create_user(name, password="bench-password")
            member_set(project=queue_project, username=name, role="annotator")
            sessions.append(session_for(base, name, "bench-password"))
        def run_clients(pace: float) -> dict:
            """Every client leases one item and submits it, --rounds times; ``pace`` > 0 starts a pair every
            ``pace`` seconds per client (an annotator who reads), 0 runs them back to back (saturation)."""
            next_ms: list[float] = []
            submit_ms: list[float] = []
            seen: list[int] = []
            errors: list[str] = []
            lock = threading.Lock()

            def annotate(session: requests.Session, offset: float) -> None:
                time.sleep(offset)
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    r = session.get(f"{base}/api/v1/projects/{queue_project.id}/queue/next/", params={"n": 1})
                    took = (time.perf_counter() - started) * 1000
                    if r.status_code != 200 or not r.json():
                        errors.append(f"next {r.status_code}")
                        continue
                    item = r.json()[0]
                    t = time.perf_counter()
                    s = session.post(f"{base}/api/v1/queue/{item['id']}/submit/",
                                     json={"label": labels[item["id"] % 5]})
                    took_submit = (time.perf_counter() - t) * 1000
                    with lock:
                        next_ms.append(took)
                        submit_ms.append(took_submit)
                        seen.append(item["id"])
                        if s.status_code != 201:
                            errors.append(f"submit {s.status_code}")
                    if pace:
                        time.sleep(max(0.0, pace - (time.perf_counter() - started)))

            threads = [threading.Thread(target=annotate, args=(s, pace * i / len(sessions)))
                       for i, s in enumerate(sessions)]
            t0 = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - t0
            return {
                "items": n, "clients": args.clients, "pace_s": pace, "pairs": len(seen),
                "duplicates": len(seen) - len(set(seen)), "errors": len(errors), "pairs_per_s": len(seen) / wall,
                "next_p50_ms": statistics.median(next_ms), "next_p95_ms": percentile(next_ms, 0.95),
                "next_p99_ms": percentile(next_ms, 0.99),
                "submit_p50_ms": statistics.median(submit_ms), "submit_p95_ms": percentile(submit_ms, 0.95),
                "submit_p99_ms": percentile(submit_ms, 0.99),
            }

        pusher = (Background(push_rate, admin, base, pid, push[half:]) if not args.queue_only and push[half:]
                  else None)
        if pusher is not None:
            pusher.start()
        results["queue"] = run_clients(0.0)
        if pusher is not None:
            results["push_under_load"] = pusher.value()
            results["push_under_load"]["raw_ratio"] = results["push_under_load"]["samples_per_s"] / raw_rate
        if args.pace:
            results["queue_paced"] = run_clients(args.pace)
        results["load_average_end"] = os.getloadavg()
    finally:
        server.stop()

    queue_lines = []
    for key in ("queue", "queue_paced"):
        if key not in results:
            continue
        q = results[key]
        how = f"one pair per {q['pace_s']:g} s per client" if q["pace_s"] else "back to back"
        queue_lines += [
            f"| queue next p50 / p95 / p99 (ms), {q['items']:,} items, {q['clients']} clients, {how} | "
            f"{q['next_p50_ms']:.1f} / {q['next_p95_ms']:.1f} / {q['next_p99_ms']:.1f} |",
            f"| queue submit p50 / p95 / p99 (ms), {how} | {q['submit_p50_ms']:.1f} / {q['submit_p95_ms']:.1f} / "
            f"{q['submit_p99_ms']:.1f} |",
            f"| next/submit pairs per second, duplicates, errors, {how} | {q['pairs_per_s']:.0f} / "
            f"{q['duplicates']} / {q['errors']} |"]
    if args.queue_only:
        print("\n".join(["| measure | value |", "| --- | ---: |", *queue_lines]))
        Path(args.json).with_name("loop_queue.json").write_text(json.dumps(results, indent=2))
        return
    c1, c2 = results["cycle"], results["cycle2"]
    lines = [f"Loop benchmark ({results['machine']}, {results['date']}; {args.labeled:,} labeled + "
             f"{args.unlabeled:,} unlabeled, mode {c1['mode']}, max_length {args.max_length})", ""]
    lines += ["| stage | first cycle (s) | second cycle, +{} labels (s) |".format(results["labels_between_cycles"]),
              "| --- | ---: | ---: |",
              f"| import {args.labeled + args.unlabeled:,} rows (API) | {results['import_s']:.1f} | |"]
    for stage in dict.fromkeys([*c1["stages"], *c2["stages"]]):
        one, two = c1["stages"].get(stage), c2["stages"].get(stage)
        lines.append(f"| {stage.removesuffix('_s')} | {'' if one is None else f'{one:.1f}'} | "
                     f"{'' if two is None else f'{two:.1f}'} |")
    lines.append(f"| **request to queue ready** | **{c1['total_s']:.1f}** | **{c2['total_s']:.1f}** |")
    lines.append(f"| scoring per 10,000 texts ({c1['chunks']} / {c2['chunks']} chunks) | "
                 f"{c1['scoring_s_per_10k']:.1f} | {c2['scoring_s_per_10k']:.1f} |")
    s = results["scoring"]
    p1, p2 = results["push"], results.get("push_under_load")
    lines += ["", "| measure | value |", "| --- | ---: |",
              f"| raw training/ scoring, same version (texts/s) | {s['raw_texts_per_s']:.0f} |",
              f"| production push alone, 100 per request (samples/s; ratio to raw) | {p1['samples_per_s']:.0f} "
              f"({p1['raw_ratio']:.2f}) |"]
    if p2:
        lines.append(f"| production push beside {args.clients} queue clients back to back (samples/s; ratio) | "
                     f"{p2['samples_per_s']:.0f} ({p2['raw_ratio']:.2f}) |")
    lines += queue_lines
    print("\n".join(lines))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.json).with_suffix(".md").write_text(
        "## The loop: one cycle, scoring, the queue under load, production pushes\n\n"
        f"Command: `python bench/loop.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
