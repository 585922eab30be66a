"""Page benchmark: server time of every web page with 100,000 examples in the project.

    python bench/pages.py [--rows 100000] [--batch 10000] [--repeat 30] [--keep]

Builds a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench_pages, dropped and re-created unless --keep
finds it filled), imports --rows examples through services.examples.examples_import in --batch-row batches
(20% labeled, 10% production samples), and adds what the loop would have written by then: five model
versions with metrics, a score for every example, 2% of the labeled ones flagged by the noise report,
500 items answered by two annotators, 2,000 queued items, 50 drift windows and 20 jobs. Then it times each
page with the Django test client (in process: middleware, view, queries and template, no network) --repeat
times, prints p50/p95 and writes bench/results/pages.json and bench/results/pages.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ["business", "sport", "tech", "politics", "entertainment"]
SENTENCE = ("market shares rose after the central bank held rates while the striker scored twice and the "
         "minister promised new funding for schools as the band announced a tour and the phone maker "
            "released software updates")
WORDS = SENTENCE.split()
BUDGET_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def prepare_database(url: str, keep: bool) -> bool:
    """Create the scratch database; True when --keep found it already filled."""
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and keep:
            try:
                with psycopg.connect(url) as db:
                    if db.execute("SELECT count(*) FROM annotator_project").fetchone()[0]:
                        return True
            except psycopg.Error:
                pass
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return False


def build(rows: int, batch: int) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from annotator.models import (
        DriftWindow,
        Example,
        ExampleScore,
        Job,
        ModelVersion,
        Role,
    )
    from annotator.services.annotations import annotation_create
    from annotator.services.examples import examples_import
    from annotator.services.projects import member_set, project_create
    from annotator.services.queue import queue_add

    timings: dict[str, float] = {}
    users = get_user_model().objects
    admin = users.create_user("bench-admin", password="bench-password")
    users.create_user("bench-reviewer", password="bench-password")
    annotator = users.create_user("bench-annotator", password="bench-password")
    project = project_create(user=admin, name="Bench news", task="single_label", labels=LABELS,
                             settings={"guidelines": "Pick the main topic of the article."})
    member_set(project=project, username="bench-reviewer", role=Role.REVIEWER)
    member_set(project=project, username="bench-annotator", role=Role.ANNOTATOR)
    rng = random.Random(0)
    start = time.perf_counter()
    base_time = timezone.now() - timedelta(days=30)
    for offset in range(0, rows, batch):
        chunk = []
        for i in range(offset, min(rows, offset + batch)):
            text = " ".join(rng.choices(WORDS, k=rng.randint(12, 60))) + f" #{i}"
            row = {"text": text, "external_id": f"b-{i}", "metadata": {"batch": i // batch}}
            if i % 10 == 9:
                row["source"] = "production"
                row["observed_at"] = (base_time + timedelta(seconds=20 * i)).isoformat()
            elif i % 5 == 0:
                row["label"] = LABELS[i % len(LABELS)]
            chunk.append(row)
        examples_import(project=project, user=admin, rows=chunk)
    timings["import_s"] = time.perf_counter() - start

    start = time.perf_counter()
    versions = []
    for number in range(1, 6):
        n_train = 400 * number
        f1 = 0.6 + 0.06 * number
        bins = [{"lower": b / 15, "upper": (b + 1) / 15, "count": 20, "accuracy": min(1.0, b / 15 + 0.03),
                 "confidence": b / 15 + 0.033} for b in range(15)]
        metrics = {
            "n": 400, "macro_f1": f1, "macro_f1_std": 0.01, "ece": 0.03, "ece_before": 0.09, "temperature": 1.4,
            "n_train": n_train, "n_val": 400, "mode": "frozen",
            "per_class": [{"label": n, "precision": f1, "recall": f1, "f1": f1, "support": 80} for n in LABELS],
            "confusion_matrix": [[70 if r == c else 2 for c in range(5)] for r in range(5)],
            "calibration": {"bins_before": bins, "bins_after": bins},
            "slices": {"source=import": {"n": 300, "macro_f1": f1}, "source=production": {"n": 100, "macro_f1": f1 - 0.05}},
            "noise": {"estimated_noise_rate": 0.06, "n": rows // 5, "n_issues": rows // 250,
                      "per_class": [{"label": n, "estimated_noise_rate": 0.04 + 0.01 * i, "n": rows // 25}
                                    for i, n in enumerate(LABELS)]},
        }
        versions.append(ModelVersion.objects.create(
            project=project, number=number, status="ready", mode="frozen", n_train=n_train, metrics=metrics,
            comparison={"against_version": number - 1, "on": "production", "n": 100, "candidate_macro_f1": f1,
                        "serving_macro_f1": f1 - 0.06, "promoted": True} if number > 1 else {},
            finished_at=timezone.now()))
    latest = versions[-1]
    project.serving_version = latest
    project.save(update_fields=["serving_version"])
    ids = list(Example.objects.filter(project=project).order_by("id").values_list("id", "label_source"))
    scores = []
    for n, (example_id, label_source) in enumerate(ids):
        labeled = bool(label_source)
        issue = labeled and n % 50 == 0
        probs = [0.05] * 5
        probs[n % 5] = 0.8
        scores.append(ExampleScore(
            example_id=example_id, model_version=latest, probs=probs, predicted=[LABELS[n % 5]], confidence=0.8,
            entropy=0.4, margin=0.75, label_quality=(0.02 + (n % 97) / 200) if labeled else None,
            is_issue=issue if labeled else None, suggested_label=LABELS[(n + 1) % 5] if labeled else ""))
        if len(scores) == 10_000:
            ExampleScore.objects.bulk_create(scores)
            scores = []
    ExampleScore.objects.bulk_create(scores)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE annotator_example e SET latest_score_id = s.id FROM annotator_examplescore s "
                       "WHERE s.example_id = e.id AND s.model_version_id = %s", [latest.id])
    timings["scores_s"] = time.perf_counter() - start

    # 500 labeled items answered a second time by the annotator (one in four disagrees), through the service.
    overlap = Example.objects.in_bulk([pk for pk, source in ids if source][:500])
    for i, example in enumerate(overlap.values()):
        example.project = project
        annotation_create(example=example, user=annotator, labels=[LABELS[(i * 5 + (i % 4 == 0)) % 5]])
    unlabeled = [pk for pk, source in ids if not source]
    queue_add(project=project, examples=unlabeled[:2000], reason="uncertain", priority=1.0,
              explanation="the model hesitates between sport and business")
    production = list(Example.objects.filter(project=project, source="production").order_by("id")
                      .values_list("id", flat=True))
    DriftWindow.objects.bulk_create(
        DriftWindow(project=project, model_version=latest, sequence=w, n=200,
                    first_example_id=production[w * 200], last_example_id=production[w * 200 + 199],
                    class_distribution={n: 0.2 for n in LABELS}, class_shift=0.02 + 0.001 * w,
                    mean_confidence=0.8 - 0.002 * w, confidence_shift=0.05, embedding_drift=0.001 * w,
                    anomalies={"texts_with_unk_share": 0.01, "truncation_rate": 0.02, "malformed_share": 0.0},
                    alert=w % 10 == 9, reasons=["class mix shifted"] if w % 10 == 9 else [],
                    actions=["routed 10 samples to the queue"] if w % 10 == 9 else [])
        for w in range(min(50, len(production) // 200)))
    for i in range(20):
        Job.objects.create(project=project, kind="train", status="succeeded" if i else "running",
                           progress=1.0 if i else 0.4, stage="done" if i else "training")
    with connection.cursor() as cursor:
        # What autovacuum does soon after a bulk load: statistics and the visibility map (index-only scans).
        cursor.execute("VACUUM ANALYZE")
    return timings


def measure(repeat: int) -> list[dict[str, object]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from annotator.models import Job, Project, QueueItem

    project = Project.objects.get(name="Bench news")
    users = get_user_model().objects
    reviewer = Client()
    reviewer.force_login(users.get(username="bench-reviewer"))
    annotator = Client()
    annotator.force_login(users.get(username="bench-annotator"))
    job = Job.objects.filter(project=project, status="running").first()
    pid = project.id
    htmx = {"HX-Request": "true"}
    pages = [
        ("project list", reviewer, "get", reverse("project-list"), {}),
        ("overview", reviewer, "get", reverse("project-overview", args=[pid]), {}),
        ("job status (poll)", reviewer, "get", reverse("job-status", args=[pid, job.id]), htmx),
        ("annotate", annotator, "get", reverse("annotate", args=[pid]), {}),
        ("annotate submit (htmx)", annotator, "submit", None, htmx),
        ("review: noise report", reviewer, "get", reverse("review", args=[pid]), {}),
        ("review: one class, page 5", reviewer, "get", reverse("review", args=[pid]) + "?label=sport&page=5", htmx),
        ("review: agreement", reviewer, "get", reverse("agreement", args=[pid]), {}),
        ("team", reviewer, "get", reverse("team", args=[pid]), {}),
        ("models", reviewer, "get", reverse("models", args=[pid]), {}),
        ("drift", reviewer, "get", reverse("drift", args=[pid]), {}),
        ("import", reviewer, "get", reverse("import", args=[pid]), {}),
        ("export", reviewer, "get", reverse("export", args=[pid]), {}),
    ]
    results = []
    for name, client, method, url, headers in pages:
        times = []
        for i in range(repeat + 2):
            if method == "submit":
                item = QueueItem.objects.filter(project=project, status="leased").order_by("-priority", "id").first()
                if item is None:
                    client.get(reverse("annotate", args=[pid]))
                    item = QueueItem.objects.filter(project=project, status="leased").first()
                target = reverse("annotate-submit", args=[pid, item.id])
                start = time.perf_counter()
                response = client.post(target, {"label": "sport"}, headers=headers)
            else:
                start = time.perf_counter()
                response = client.get(url, headers=headers)
            elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code in (200, 286), (name, response.status_code)
            if i >= 2:  # the first two warm caches and connections
                times.append(elapsed)
        results.append({"page": name, "n": len(times), "p50_ms": round(statistics.median(times), 1),
                        "p95_ms": round(percentile(times, 0.95), 1), "max_ms": round(max(times), 1)})
        print(f"{name:32s} p50 {results[-1]['p50_ms']:7.1f} ms   p95 {results[-1]['p95_ms']:7.1f} ms", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse a database a previous run filled")
    parser.add_argument("--json", default=str(ROOT / "bench/results/pages.json"))
    parser.add_argument("--md", default=str(ROOT / "bench/results/pages.md"))
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench_pages")
    filled = prepare_database(url, args.keep)
    os.environ.update({"DATABASE_URL": url, "DEBUG": "0", "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
                       "ALLOWED_HOSTS": "testserver,localhost", "LOG_LEVEL": "WARNING",
                       "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.core.management import call_command

    django.setup()
    from django.conf import settings
    from django.db import connection

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    timings: dict[str, float] = {}
    if not filled:
        call_command("migrate", verbosity=0)
        print(f"building a project of {args.rows:,} examples in batches of {args.batch:,}...", flush=True)
        timings = build(args.rows, args.batch)
        print(f"  import {timings['import_s']:.1f} s, scores {timings['scores_s']:.1f} s", flush=True)
    results = measure(args.repeat)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    machine = f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.machine()}, PostgreSQL {pg_version}, Python {platform.python_version()}"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python bench/pages.py " + " ".join(sys.argv[1:])
    report = {"command": command.strip(), "machine": machine, "date": date, "rows": args.rows, "repeat": args.repeat,
              "budget_ms": BUDGET_MS, "build": timings, "pages": results,
              "all_within_budget": all(r["p95_ms"] <= BUDGET_MS for r in results)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"## Page server time with {args.rows:,} examples",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine}; shared with other work; date: {date}.",
        "",
        "| page | p50 (ms) | p95 (ms) | max (ms) |",
        "| --- | --- | --- | --- |",
        *[f"| {r['page']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} |" for r in results],
        "",
        f"Each page requested {args.repeat} times (after two warm-up requests) with the Django test client in "
        "process: middleware, view, queries and template rendering, no network. The project holds "
        f"{args.rows:,} examples (20% labeled, 10% production), a score per example from the serving version, "
        "2% of the labeled ones flagged by the noise report, 500 items with two annotators, 2,000 queued items, "
        "50 drift windows, 5 versions and 20 jobs, vacuumed and analyzed after the load (the steady state "
        f"autovacuum keeps a database in). Budget: {BUDGET_MS:.0f} ms per page; "
        f"{'every page is within it at p95' if report['all_within_budget'] else 'some pages exceed it at p95'}.",
        "",
    ]
    Path(args.md).write_text("\n".join(lines))
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
