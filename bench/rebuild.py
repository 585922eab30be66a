"""Queue rebuild at scale: time and peak memory of picking and writing the queue over N pool examples.

    python bench/rebuild.py [--sizes 50000,1000000] [--old-sizes 50000,1000000] [--cold-sizes 50000,1000000]
                            [--labeled 5000] [--old-timeout 900] [--memory-cap-gb 12]

For each N a scratch PostgreSQL database (BENCH_DATABASE_URL, default
postgresql://postgres:postgres@127.0.0.1:5432/relabel_rebuild_bench, dropped and re-created) gets a project
written straight into its tables with COPY: ``--labeled`` imported labels (a tenth flagged by the detector) and N
unlabeled examples (2% production samples), one model version with a holdout cut of 0.2, an ExampleScore row
per example with random probabilities over 5 classes (confidence, entropy and margin computed as scoring
computes them), and the pool's embeddings as scoring saves them (chunks of 1,000 rows of 384-d float16 random
vectors). Then each code path runs in a process of its own, one after the other, against the same data:

- ``new``: ``services.queue_policy.pick_items`` and ``services.queue.queue_add_many`` of this checkout;
- ``old``: the same functions as they were before issue 15 part 3 (kept verbatim in
  ``tests/annotator/services/queue_policy_before.py``): every pool score and embedding loaded into Python.

Each process does what ``rebuild_queue`` does for the queue (the effective mix and quota, ``pick_items``, then
in one transaction the cancel of older items and the writes) with the project's default settings (queue of 500,
entropy, diverse), and reports seconds and its peak RSS (``ru_maxrss``; its RSS just before the rebuild, after
``django.setup()`` and the imports, is reported apart). ``--cold-sizes`` adds a cold-start rebuild of the new code
(the version taken for one with 12 labels: a representative k-means sample instead of uncertainty). A process
past ``--memory-cap-gb`` or ``--old-timeout`` is killed and reported so.
Target: at 1,000,000, rebuild in at most 30 s with peak RSS under 2 GB. Prints a table and writes
bench/results/rebuild.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _bbc import markdown_table, write_results  # noqa: E402
from stack import BASE_ENV, code_under_test, migrate, recreate_database, setup_django  # noqa: E402

LABELS = ["business", "entertainment", "politics", "sports", "tech"]
CHUNK = 1000
DIM = 384


# --- the data ----------------------------------------------------------------------------------------------------
def build(n_pool: int, n_labeled: int, seed: int = 0) -> dict[str, Any]:
    """The project, its version, scores and pool embeddings (Django is set up against the scratch database)."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from annotator.models import ModelVersion
    from annotator.services.holdout import HOLDOUT_RULE, HOLDOUT_SHARE
    from annotator.services.pool_embeddings import pool_embeddings_save
    from annotator.services.projects import project_create
    from training.query import uncertainty_summary

    rng = np.random.default_rng(seed)
    user = get_user_model().objects.create_superuser("bench", "", "bench-password")
    project = project_create(user=user, name="rebuild bench", task="single_label", labels=LABELS)
    version = ModelVersion.objects.create(
        project=project, number=1, status=ModelVersion.Status.READY, n_train=n_labeled,
        snapshot={"n_labeled": n_labeled},
        metrics={"macro_f1": 0.8, "holdout": {"rule": dict(HOLDOUT_RULE), "cut": HOLDOUT_SHARE}})
    total = n_labeled + n_pool
    now = timezone.now().isoformat()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy("COPY annotator_example (id, project_id, external_id, text, text_hash, source, metadata, "
                      "created_at, label_source) FROM STDIN") as copy:
            for start in range(1, total + 1, 100_000):
                lines = []
                for pk in range(start, min(start + 100_000, total + 1)):
                    labeled = pk <= n_labeled
                    source = "production" if not labeled and pk % 50 == 0 else "import"
                    lines.append(f"{pk}\t{project.pk}\tb-{pk}\tbench text {pk}\t{pk:064x}\t{source}\t{{}}\t{now}\t"
                                 f"{'import' if labeled else ''}\n")
                copy.write("".join(lines))
        with raw.copy("COPY annotator_annotation (example_id, user_id, kind, labels, note, created_at) "
                      "FROM STDIN") as copy:
            copy.write("".join(f"{pk}\t{user.pk}\timport\t[\"{LABELS[pk % 5]}\"]\t\t{now}\n"
                               for pk in range(1, n_labeled + 1)))
        cursor.execute("SELECT setval(pg_get_serial_sequence('annotator_example', 'id'), %s)", [total])
    timings["examples_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with connection.cursor() as cursor, cursor.cursor.copy(
            "COPY annotator_examplescore (example_id, model_version_id, probs, predicted, confidence, entropy, "
            "margin, label_quality, is_issue, suggested_label, created_at) FROM STDIN") as copy:
        for start in range(1, total + 1, 100_000):
            ids = np.arange(start, min(start + 100_000, total + 1))
            probs = np.round(rng.dirichlet(np.full(len(LABELS), 0.3), size=len(ids)), 6)
            summary = uncertainty_summary(probs)
            margin = 1.0 - summary["margin"]
            quality = rng.uniform(0.0, 1.0, size=len(ids)).tolist()
            confidence, entropy = summary["confidence"].tolist(), summary["entropy"].tolist()
            margin_values, predicted = margin.tolist(), summary["predicted"].tolist()
            for i, (pk, row) in enumerate(zip(ids.tolist(), probs.tolist(), strict=True)):
                labeled = pk <= n_labeled
                issue = labeled and quality[i] < 0.1
                copy.write_row((pk, version.pk, json.dumps(row), json.dumps([LABELS[predicted[i]]]), confidence[i],
                                entropy[i], margin_values[i], quality[i] if labeled else None,
                                issue if labeled else None, "tech" if issue else "", now))
    timings["scores_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for index, start in enumerate(range(n_labeled + 1, total + 1, CHUNK)):
        ids = list(range(start, min(start + CHUNK, total + 1)))
        pool_embeddings_save(version, index, ids, rng.standard_normal((len(ids), DIM), dtype=np.float32))
    timings["embeddings_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE annotator_example")
        cursor.execute("VACUUM ANALYZE annotator_examplescore")
        cursor.execute("VACUUM ANALYZE annotator_annotation")
    timings["analyze_s"] = time.perf_counter() - t0
    return {"project": project.pk, "version": version.pk, "timings": timings}


# --- one measured rebuild (a process of its own) -------------------------------------------------------------------
def current_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def measure(path: str, project_id: int, version_id: int, *, cold: bool) -> dict[str, Any]:
    import resource

    from django.db import transaction
    from django.db.models import Q
    from django.utils import timezone

    from annotator.models import ModelVersion, Project, QueueItem
    from annotator.selectors.noise import detector_precision
    from annotator.services.queue_policy import effective_mix
    from training import query  # noqa: F401 - imported before the baseline, as a worker has it

    if path == "old":
        from tests.annotator.services import queue_policy_before as code
    else:
        from annotator.services import queue as queue_code
        from annotator.services import queue_policy as policy_code

        class code:  # noqa: N801 - the two functions under one name, like the old module
            pick_items = staticmethod(policy_code.pick_items)
            queue_add_many = staticmethod(queue_code.queue_add_many)

    import sklearn.cluster  # noqa: F401

    project = Project.objects.get(pk=project_id)
    version = ModelVersion.objects.get(pk=version_id)
    if cold:  # too few labels to trust uncertainty: the representative (k-means) sample
        version.snapshot = {"n_labeled": 12}
    baseline_mb = current_rss_mb()
    baseline_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    mix = effective_mix(project, detector_precision(project))
    size = int(project.setting("queue_size"))
    quota = {reason: int(size * share) for reason, share in mix.items()}
    picked, state = code.pick_items(project, version, quota)
    t1 = time.perf_counter()
    with transaction.atomic():
        given_up = Q(status=QueueItem.Status.PENDING) | Q(status=QueueItem.Status.LEASED,
                                                          lease_expires_at__lt=timezone.now())
        QueueItem.objects.filter(given_up, project=project, model_version__isnull=False).exclude(
            reason=QueueItem.Reason.DRIFT).update(status=QueueItem.Status.CANCELLED)
        created = {reason: code.queue_add_many(project=project, reason=reason, items=items,
                                               model_version_id=version.id) for reason, items in picked.items()}
    t2 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    QueueItem.objects.filter(project=project).delete()
    return {"pick_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": peak_mb,
            "baseline_rss_mb": baseline_mb, "baseline_peak_rss_mb": baseline_peak_mb, "cold_start": state["cold_start"],
            "created": created, "quota": quota,
            "picked": {reason: [item[0] for item in items] for reason, items in picked.items()},
            "held_back_for_holdout": state["held_back_for_holdout"]}


def run_measured(path: str, env: dict[str, str], ids: dict[str, Any], timeout: float, cap_mb: float, *,
                 cold: bool = False) -> dict:
    """Run ``measure`` in a child; kill it past ``timeout`` seconds or ``cap_mb`` of RSS."""
    command = [sys.executable, __file__, "--measure", path, "--project", str(ids["project"]),
               "--version", str(ids["version"]), *(["--cold"] if cold else [])]
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    seen_mb = 0.0
    why = None
    while child.poll() is None:
        time.sleep(0.25)
        try:
            rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{child.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
            seen_mb = max(seen_mb, rss_kb / 1024)
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
        if seen_mb > cap_mb:
            why = f"killed: RSS passed {cap_mb / 1024:.0f} GB"
        elif time.monotonic() - started > timeout:
            why = f"killed: still running after {timeout:.0f} s"
        if why:
            child.kill()
            break
    out, err = child.communicate()
    if why:
        return {"error": why, "seconds_until_killed": time.monotonic() - started, "rss_seen_mb": seen_mb}
    if child.returncode != 0:
        return {"error": f"exit {child.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,1000000")
    parser.add_argument("--old-sizes", default="50000,1000000", help="sizes the old code path runs at too")
    parser.add_argument("--labeled", type=int, default=5000)
    parser.add_argument("--old-timeout", type=float, default=900.0)
    parser.add_argument("--memory-cap-gb", type=float, default=12.0)
    parser.add_argument("--cold-sizes", default="50000,1000000",
                        help="sizes at which a cold-start rebuild (k-means over a bounded sample) runs too (new code)")
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--project", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--version", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:  # the child: Django is configured by the parent's environment
        setup_django(dict(os.environ))
        print(json.dumps(measure(args.measure, args.project, args.version, cold=args.cold)))
        return

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_rebuild_bench")
    artifacts = ROOT / "var" / "bench-rebuild-artifacts"
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": url, "ARTIFACT_DIR": str(artifacts),
           "EMBEDDING_CACHE_DIR": str(artifacts / "cache"),
           "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
           "PYTHONPATH": str(ROOT)}
    setup_django(env)
    from django.db import connection

    sizes = [int(s) for s in args.sizes.split(",") if s]
    old_sizes = {int(s) for s in args.old_sizes.split(",") if s}
    cold_sizes = {int(s) for s in args.cold_sizes.split(",") if s}
    results: dict[str, Any] = {"labeled": args.labeled, "code": code_under_test(env), "runs": []}
    rows = []
    for n in sizes:
        connection.close()
        recreate_database(url)
        subprocess.run(["rm", "-rf", str(artifacts)], check=True)
        migrate(env)
        t0 = time.perf_counter()
        ids = build(n, args.labeled)
        ids["build_s"] = time.perf_counter() - t0
        connection.close()
        print(f"N={n:,}: built in {ids['build_s']:.0f} s {ids['timings']}", flush=True)
        run: dict[str, Any] = {"pool": n, "build": ids}
        paths = [("new", False), *([("old", False)] if n in old_sizes else []),
                 *([("new", True)] if n in cold_sizes else [])]
        for path, cold in paths:
            key = f"{path}_cold_start" if cold else path
            measured = run_measured(path, env, ids, args.old_timeout if path == "old" else 600.0,
                                    args.memory_cap_gb * 1024, cold=cold)
            run[key] = measured
            print(f"N={n:,} {key}: {json.dumps({k: v for k, v in measured.items() if k != 'picked'})}", flush=True)
            label = f"{path}, cold start" if cold else path
            if "error" in measured:
                rows.append([f"{n:,}", label, "-", "-", "-", "-", "-", measured["error"]])
            else:
                rows.append([f"{n:,}", label, measured["pick_s"], measured["write_s"], measured["total_s"],
                             f"{measured['peak_rss_mb']:.0f}", f"{measured['baseline_rss_mb']:.0f}",
                             sum(measured["created"].values())])
        if "old" in run and "error" not in run["old"] and "error" not in run["new"]:
            run["same_items"] = run["old"]["picked"] == run["new"]["picked"]
        for key in ("old", "new", "new_cold_start"):
            run.get(key, {}).pop("picked", None)
        results["runs"].append(run)
    table = markdown_table(["pool", "code", "pick s", "write s", "rebuild s", "peak RSS MB", "RSS before MB",
                            "items"], rows)
    same = {run["pool"]: run.get("same_items") for run in results["runs"] if "same_items" in run}
    notes = ("`new` is this checkout, `old` the code before issue 15 part 3 (every pool score and embedding "
             "loaded). Peak RSS is the measuring process's maximum (`ru_maxrss`); `RSS before` is its RSS just "
             "before the rebuild (after `django.setup()` and the imports). A cold-start rebuild clusters a bounded "
             "sample (k-means). Target at 1,000,000: at most 30 s and under 2,048 MB. Same items picked by both "
             f"paths: {same or 'not compared'}.")
    write_results("rebuild", "Queue rebuild at scale", results, table, notes)


if __name__ == "__main__":
    main()
