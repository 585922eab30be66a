"""Fault checks: what happens, what the user sees and what is lost when parts of the stack fail.

    python bench/faults.py [--pool 3000] [--chunk 500] [--import-rows 10000] [--only scoring,redis,...]

Runs as root on loopback against a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgresql://postgres:postgres@127.0.0.1:5432/relabel_faults, dropped and re-created) with its own
redis-server (port 18131), gunicorn (port 18130, two workers) and two Celery workers (one pool process
each, every queue), ARTIFACT_DIR on a tmpfs mounted for the run (var/art-faults/disk). Scenarios:

- training:  SIGKILL of the worker that trains (main process and pool), another worker takes over;
- scoring:   SIGKILL of a pool process while it scores a chunk (Celery redelivers the chunk), then of a whole
             worker while it scores a chunk (the other worker goes on, the sweeper re-sends the lost chunk);
             then the dead worker's delivery comes back, as Redis does after its visibility timeout;
- redis:     production pushes (50 samples per request, back to back) while Redis is restarted twice
             (SIGTERM, then SIGKILL with 5 s down); drift windows must cover every sample afterwards;
- import:    pg_terminate_backend on the connection of a 10,000-row POST /examples/ (held inside its
             transaction, and at timed moments), and on the import_examples command's connection;
- artifacts: ARTIFACT_DIR full (ENOSPC), then read-only (EROFS) while a version trains; then fixed.

Each prints a row (scenario, what happened, what the user saw, what was lost, pass/fail) and the whole
run writes bench/results/faults.json and .md. Jobs are taken over after JOB_STALE_SECONDS=15 here
(production default 60 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bbc import markdown_table, write_results  # noqa: E402
from bench.faults_scenarios import (  # noqa: E402
    scenario_artifacts,
    scenario_import,
    scenario_redis,
    scenario_scoring,
    scenario_training,
)
from bench.faults_stack import (  # noqa: E402
    DISK,
    LOGS,
    REDIS_PORT,
    STALE_SECONDS,
    VAR,
    Api,
    Row,
    Stack,
    corpus,
    row,
)
from bench.stack import BASE_ENV, DJANGO_KEYS, migrate, recreate_database, setup_django  # noqa: E402

SCENARIOS = ("training", "scoring", "redis", "import", "artifacts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=3000, help="unlabeled sentences scored in the scoring scenario")
    parser.add_argument("--chunk", type=int, default=500, help="SCORE_CHUNK_SIZE of the workers")
    parser.add_argument("--import-rows", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--disk-mb", type=int, default=900, help="size of the tmpfs for ARTIFACT_DIR")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    assert set(chosen) <= set(SCENARIOS), chosen

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_faults")
    recreate_database(url)
    LOGS.mkdir(parents=True, exist_ok=True)
    DISK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["umount", "-l", str(DISK)], capture_output=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.disk_mb}m", "tmpfs", str(DISK)], capture_output=True).returncode == 0
    if not mounted:
        shutil.rmtree(DISK, ignore_errors=True)
        DISK.mkdir(parents=True)
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
           "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "ARTIFACT_DIR": str(DISK),
           "EMBEDDING_CACHE_DIR": str(VAR / "embeddings"), "THROTTLE_PUSH": "1000000/min",
           "JOB_SWEEP_SECONDS": "2", "JOB_HEARTBEAT_SECONDS": "2", "JOB_STALE_SECONDS": str(STALE_SECONDS),
           "SCORE_CHUNK_SIZE": str(args.chunk), "PYTHONUNBUFFERED": "1"}
    migrate(env)
    setup_django(env, (*DJANGO_KEYS, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("bench", "", "bench-password")
    data = corpus()
    stack = Stack(env)
    rows: list[Row] = []
    try:
        token = requests.post(f"{stack.base}/api/v1/auth/token/",
                              json={"username": "bench", "password": "bench-password"}).json()["token"]
        api = Api(stack.base, token)
        runs: dict[str, Callable[[], list[Row]]] = {
            "training": lambda: scenario_training(stack, api, data),
            "scoring": lambda: scenario_scoring(stack, api, data, pool_size=args.pool),
            "redis": lambda: scenario_redis(stack, api, data),
            "import": lambda: scenario_import(stack, api, data, n=args.import_rows, url=url),
            "artifacts": lambda: scenario_artifacts(stack, api, data, mounted=mounted),
        }
        for scenario in chosen:
            began = time.monotonic()
            try:
                new = runs[scenario]()
            except Exception as error:  # noqa: BLE001 - a scenario that breaks is a failed row, not a lost run
                new = [row(scenario, f"the check itself failed: {type(error).__name__}: {error}", "?", [str(error)])]
            for r in new:
                r["seconds"] = round(time.monotonic() - began, 1)
                print(f"[{'pass' if r['pass'] else 'FAIL'}] {r['scenario']}: {r['what happened']} | "
                      f"{r['what the user saw']} | lost: {r['lost']}", flush=True)
            rows += new
    finally:
        stack.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(DISK)], check=False)

    headers = ["scenario", "what happened", "what the user saw", "lost", "pass"]
    table = markdown_table(headers, [[r[h] if h != "pass" else ("pass" if r[h] else "FAIL") for h in headers]
                                     for r in rows])
    notes = (f"Stack: gunicorn (2 workers), two Celery workers (one pool process each), PostgreSQL, redis-server; "
             f"jobs are taken over after {STALE_SECONDS} s without a heartbeat (production default 60 s); scoring "
             f"chunks of {args.chunk}. ARTIFACT_DIR on a {args.disk_mb} MB tmpfs"
             f"{'' if mounted else ' (not mounted: not root; chmod instead)'}. A row passes when nothing a user "
             "wrote was lost and every answer was a success or a clear, retryable error.")
    write_results("faults", "Fault checks", {"rows": rows, "all_pass": all(r["pass"] for r in rows),
                                             "settings": {"pool": args.pool, "chunk": args.chunk,
                                                          "import_rows": args.import_rows,
                                                          "stale_seconds": STALE_SECONDS, "tmpfs": mounted}},
                  table, notes)
    sys.exit(0 if all(r["pass"] for r in rows) else 1)


if __name__ == "__main__":
    main()
