"""Ingest benchmark: bulk import, export streaming and the example list's first page, over HTTP.

    python bench/ingest.py [--rows 100000] [--big 1000000] [--batch 10000] [--warmup 4]
                           [--json bench/results/ingest.json]

Starts gunicorn on loopback against a scratch PostgreSQL database (DATABASE_URL, default
postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench, dropped and re-created), then measures:
1. import of --rows examples through POST /api/v1/projects/{id}/examples/ in --batch-row requests (rows/s),
   each batch also timed alone, so a cost per row that grows with the project shows up;
2. streaming GET /export/?format=jsonl and csv of those rows (seconds);
3. GET /examples/ first page (default page size) p50/p95 at --rows, then again after growing the
   project to --big examples.
Prints a table and writes JSON.
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
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["market", "shares", "rose", "after", "the", "central", "bank", "held", "rates", "while", "the", "striker", "scored", "twice", "and", "the", "minister", "promised", "new", "funding", "for", "schools", "as", "the", "band", "announced", "a", "tour", "and", "the", "phone", "maker", "released", "software", "updates"]


def make_rows(start: int, n: int, rng: random.Random, labels: list[str]) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        text = " ".join(rng.choices(WORDS, k=rng.randint(12, 60))) + f" #{i}"
        row = {"text": text, "external_id": f"b-{i}", "source": "import", "metadata": {"batch": i // 10_000}}
        if i % 5 == 0:
            row["label"] = labels[i % len(labels)]
        rows.append(row)
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000, help="grow to this many examples for the list test; 0 skips")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--list-requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=4, help="untimed 1,000-row imports into a scratch project first")
    parser.add_argument("--json", default=str(ROOT / "bench/results/ingest.json"))
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    db_name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": "bench-only",
           "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"), "LOG_LEVEL": "WARNING"}
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([py, "manage.py", "shell", "-c",
                    "from django.contrib.auth import get_user_model as g; "
                    "g().objects.create_superuser('bench', '', 'bench-password')"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [py, "-m", "gunicorn", "annotator.wsgi", "-b", f"127.0.0.1:{args.port}", "-w", str(args.workers),
         "--timeout", "600", "--log-level", "warning"], cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/api/v1/health/", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        session = requests.Session()
        token = session.post(f"{base}/api/v1/auth/token/", json={"username": "bench", "password": "bench-password"}).json()["token"]
        session.headers["Authorization"] = f"Token {token}"
        labels = ["business", "entertainment", "politics", "sport", "tech"]
        project = session.post(f"{base}/api/v1/projects/", json={"name": "bench", "task": "single_label", "labels": labels}).json()
        pid = project["id"]
        rng = random.Random(0)
        results: dict = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                         "date": datetime.now(UTC).date().isoformat(), "rows": args.rows, "batch": args.batch,
                         "gunicorn_workers": args.workers}

        def import_range(start: int, stop: int) -> list[float]:
            per_batch = []
            for offset in range(start, stop, args.batch):
                rows = make_rows(offset, min(args.batch, stop - offset), rng, labels)
                body = json.dumps(rows)
                t0 = time.perf_counter()
                r = session.post(f"{base}/api/v1/projects/{pid}/examples/", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=600)
                per_batch.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.text[:300]
                assert r.json()["created"] == len(rows)
            return per_batch

        # Warm-up, untimed: each gunicorn worker's first import pays for lazy imports and first-use caches.
        # It goes to a scratch project so the measured project starts empty.
        scratch = session.post(f"{base}/api/v1/projects/", json={"name": "warm-up", "task": "single_label",
                                                                "labels": labels}).json()["id"]
        for w in range(args.warmup):
            r = session.post(f"{base}/api/v1/projects/{scratch}/examples/",
                             data=json.dumps(make_rows(10_000_000 + w * 1000, 1000, random.Random(w), labels)),
                             headers={"Content-Type": "application/json"}, timeout=600)
            assert r.status_code == 201, r.text[:300]

        batches = import_range(0, args.rows)
        total = sum(batches)
        results["import"] = {"seconds": total, "rows_per_s": args.rows / total, "warmup_requests": args.warmup,
                             "batch_rows_per_s": [args.batch / b for b in batches],
                             "first_batch_rows_per_s": args.batch / batches[0],
                             "last_batch_rows_per_s": args.batch / batches[-1]}

        def list_latency(n: int) -> dict:
            times = []
            for _ in range(args.list_requests):
                t0 = time.perf_counter()
                r = session.get(f"{base}/api/v1/projects/{pid}/examples/", timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and r.json()["count"] == n
            return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95), "requests": len(times)}

        for fmt in ("jsonl", "csv"):
            t0 = time.perf_counter()
            r = session.get(f"{base}/api/v1/projects/{pid}/export/", params={"format": fmt}, stream=True, timeout=600)
            size = sum(len(chunk) for chunk in r.iter_content(1 << 16))
            results[f"export_{fmt}"] = {"seconds": time.perf_counter() - t0, "bytes": size}
        results[f"list_{args.rows}"] = list_latency(args.rows)
        if args.big > args.rows:
            grow = import_range(args.rows, args.big)
            results["import_grow"] = {"rows": args.big - args.rows, "rows_per_s": (args.big - args.rows) / sum(grow),
                                      "last_batch_rows_per_s": args.batch / grow[-1]}
            results[f"list_{args.big}"] = list_latency(args.big)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\nIngest benchmark ({results['machine']}, {results['date']}, gunicorn -w {args.workers}, PostgreSQL)")
    print(f"{'measure':<46}{'value':>14}")
    print(f"{'import ' + format(args.rows, ',') + ' rows via API (rows/s)':<46}{results['import']['rows_per_s']:>14,.0f}")
    print(f"{'  first / last batch (rows/s)':<46}{results['import']['first_batch_rows_per_s']:>7,.0f} / {results['import']['last_batch_rows_per_s']:,.0f}")
    for fmt in ("jsonl", "csv"):
        print(f"{'export ' + format(args.rows, ',') + ' ' + fmt + ' (s)':<46}{results['export_' + fmt]['seconds']:>14.2f}")
    for key in (f"list_{args.rows}", f"list_{args.big}"):
        if key in results:
            print(f"{'list first page at ' + key[5:] + ' p50 / p95 (ms)':<46}{results[key]['p50_ms']:>7.1f} / {results[key]['p95_ms']:.1f}")
    if "import_grow" in results:
        print(f"{'import while growing to ' + format(args.big, ',') + ' (rows/s)':<46}{results['import_grow']['rows_per_s']:>14,.0f}")
        print(f"{'  last batch (rows/s)':<46}{results['import_grow']['last_batch_rows_per_s']:>14,.0f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    rows = [("import via API, 10,000-row batches (rows/s)", f"{results['import']['rows_per_s']:,.0f}", ">= 18,000"),
            ("  first / last batch (rows/s)", f"{results['import']['first_batch_rows_per_s']:,.0f} / "
             f"{results['import']['last_batch_rows_per_s']:,.0f}", "flat"),
            (f"export {args.rows:,} as JSONL (s)", f"{results['export_jsonl']['seconds']:.2f}", "< 5"),
            (f"export {args.rows:,} as CSV (s)", f"{results['export_csv']['seconds']:.2f}", "< 5")]
    for key in (f"list_{args.rows}", f"list_{args.big}"):
        if key in results:
            rows.append((f"list first page at {int(key[5:]):,} examples p50 / p95 (ms)",
                         f"{results[key]['p50_ms']:.1f} / {results[key]['p95_ms']:.1f}",
                         "p95 < 100" if key == f"list_{args.big}" else ""))
    if "import_grow" in results:
        rows.append((f"import while growing to {args.big:,} (rows/s)", f"{results['import_grow']['rows_per_s']:,.0f}", ""))
        rows.append(("  last batch, at the largest size (rows/s)",
                     f"{results['import_grow']['last_batch_rows_per_s']:,.0f}", "flat"))
    md = [f"## Ingest, export and the example list (PostgreSQL, gunicorn -w {args.workers})", "",
          f"Command: `python bench/ingest.py {' '.join(sys.argv[1:])}`  ",
          f"Machine: {results['machine']}; date: {results['date']}.", "",
          "| measure | value | target |", "| --- | ---: | --- |"]
    md += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    md += ["", "Over HTTP on loopback from one client, one request at a time; rows of 12-60 words, 20% labeled "
           "(each label is an annotation too)."]
    Path(args.json).with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
