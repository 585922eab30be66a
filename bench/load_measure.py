"""What bench/load.py measures and checks: CPU seconds per process group from /proc, the database's integrity
after the load (from the client-side lease and answer logs), and the per-endpoint summaries."""

from __future__ import annotations

import argparse
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from _bbc import markdown_table
from loop import percentile

if TYPE_CHECKING:
    from load import Load

# --- CPU accounting from /proc --------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, pgid, cpu seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / TICK


def group_cpu(pgids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every live process in each named process group."""
    out = dict.fromkeys(pgids, 0.0)
    by_pgid = {pgid: name for name, pgid in pgids.items()}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) and stat[1] in by_pgid:
            out[by_pgid[stat[1]]] += stat[2]
    return out


def backend_cpu(url: str) -> dict[int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")]
    return {pid: stat[2] for pid in pids if (stat := _proc_stat(pid))}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK



# --- integrity ------------------------------------------------------------------------------------------
def overlapping(leases: list[tuple], key: int) -> tuple[int, int]:
    """(keys held by more than one client, keys where two clients' certain holding intervals overlap).

    A client surely held its lease from the moment the lease response arrived until it sent the submit."""
    by_key: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    for lease in leases:
        end = lease[5] if lease[5] is not None else float("inf")
        by_key[lease[key]].append((lease[0], lease[4], end))
    shared = overlaps = 0
    for holds in by_key.values():
        if len({client for client, _, _ in holds}) < 2:
            continue
        shared += 1
        holds.sort(key=lambda h: h[1])
        if any(a[0] != b[0] and b[1] < a[2] for i, a in enumerate(holds) for b in holds[i + 1:]):
            overlaps += 1
    return shared, overlaps


def check_integrity(load: Load, project_id: int) -> dict[str, Any]:
    from django.db.models import Count

    from annotator.models import Annotation, Example, QueueItem

    items_shared, items_overlap = overlapping(load.leases, 1)
    examples_shared, examples_overlap = overlapping(load.leases, 2)
    multi = (QueueItem.objects.filter(project_id=project_id).annotate(n=Count("annotations")).filter(n__gt=1).count())
    ok_ids = {s[4] for s in load.submits_ok}
    rows = {a.id: a for a in Annotation.objects.filter(id__in=ok_ids).select_related("user")}
    items = {q.id: q for q in QueueItem.objects.filter(id__in=[s[1] for s in load.submits_ok]).select_related("done_by")}
    missing = wrong = item_not_done = 0
    for client, item_id, example_id, label, annotation_id in load.submits_ok:
        a = rows.get(annotation_id)
        if a is None:
            missing += 1
            continue
        if (a.user.username != client or a.labels != [label] or a.example_id != example_id
                or a.queue_item_id != item_id):
            wrong += 1
        q = items.get(item_id)
        if q is None or q.status != QueueItem.Status.DONE or q.done_by is None or q.done_by.username != client:
            item_not_done += 1
    queue_annotations = set(Annotation.objects.filter(example__project_id=project_id, queue_item__isnull=False)
                            .values_list("id", flat=True))
    phantom = len(queue_annotations - ok_ids)
    still_leased = QueueItem.objects.filter(project_id=project_id, status=QueueItem.Status.LEASED).count()

    pushed_ok = [(ext, ids) for _, ext, status, ids in load.pushes if status == 201 and ids]
    pushed_failed = [ext for _, ext, status, _ in load.pushes if status != 201]
    expected = {}
    for batch, ext, status, ids in load.pushes:
        if status == 201 and ids:
            size = load.args.push_batch
            for j, (external_id, pk) in enumerate(zip(ext, ids, strict=True)):
                expected[pk] = (external_id, load.push_texts[batch * size + j])
    found = {pk: (e, t, s) for pk, e, t, s in Example.objects.filter(id__in=list(expected))
             .values_list("id", "external_id", "text", "source")}
    push_missing = sum(1 for pk in expected if pk not in found)
    push_wrong = sum(1 for pk, (e, t) in expected.items() if pk in found and found[pk] != (e, t, "production"))
    failed_ext = [e for ext in pushed_failed for e in ext]
    failed_written = Example.objects.filter(project_id=project_id, external_id__in=failed_ext).count()
    production_rows = Example.objects.filter(project_id=project_id, source="production").count()
    return {
        "leases": len(load.leases), "items_leased_by_two_clients": items_shared,
        "items_held_by_two_clients_at_once": items_overlap, "examples_leased_by_two_clients": examples_shared,
        "examples_held_by_two_clients_at_once": examples_overlap,
        "queue_items_with_more_than_one_annotation": multi,
        "submits_2xx": len(load.submits_ok), "submits_2xx_missing_annotation": missing,
        "submits_2xx_wrong_label_user_example_or_item": wrong, "submits_2xx_item_not_done_by_client": item_not_done,
        "queue_annotations_without_2xx_submit": phantom, "items_left_leased": still_leased,
        "push_requests_2xx": len(pushed_ok), "pushed_samples_2xx": len(expected), "pushed_samples_missing": push_missing,
        "pushed_samples_wrong_text_or_source": push_wrong, "push_requests_failed": len(pushed_failed),
        "failed_push_rows_written": failed_written, "production_examples_in_db": production_rows,
    }


VIOLATIONS = ("items_held_by_two_clients_at_once", "examples_held_by_two_clients_at_once",
              "queue_items_with_more_than_one_annotation", "submits_2xx_missing_annotation",
              "submits_2xx_wrong_label_user_example_or_item", "submits_2xx_item_not_done_by_client",
              "queue_annotations_without_2xx_submit", "pushed_samples_missing", "pushed_samples_wrong_text_or_source",
              "failed_push_rows_written")


# --- reporting ----------------------------------------------------------------------------------------
ENDPOINTS = ["GET queue/next", "POST queue/submit", "POST samples", "POST train", "GET jobs/{id}"]


def summarize(events: list[tuple], wall: float) -> dict[str, Any]:
    """Per endpoint: count, rate, p50/p95/p99/max, expected answers, errors, classes (events of one phase)."""
    by_endpoint: dict[str, list[tuple]] = defaultdict(list)
    for event in events:
        by_endpoint[event[1]].append(event)
    out = {}
    for endpoint in sorted(by_endpoint, key=lambda e: ENDPOINTS.index(e) if e in ENDPOINTS else 99):
        evs = by_endpoint[endpoint]
        ms = [e[3] for e in evs]
        classes = Counter(e[5] for e in evs)
        during = [e[3] for e in evs if e[6]]
        after = [e[3] for e in evs if not e[6]]
        out[endpoint] = {
            "count": len(evs), "per_s": len(evs) / wall, "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95),
            "p99_ms": percentile(ms, 0.99), "max_ms": max(ms),
            "errors": sum(n for k, n in classes.items() if k.startswith("error")),
            "expected": sum(n for k, n in classes.items() if "expected" in k),
            "classes": dict(classes), "statuses": {str(k): v for k, v in Counter(e[4] for e in evs).items()},
            "retrain_running": {"count": len(during), "p50_ms": _pct(during, 0.5), "p95_ms": _pct(during, 0.95)},
            "retrain_not_running": {"count": len(after), "p50_ms": _pct(after, 0.5), "p95_ms": _pct(after, 0.95)},
        }
    return out


def timeline(events: list[tuple], batch: int, step: float = 30.0) -> list[dict[str, Any]]:
    """Per 30 s of one phase (by request start): pairs and pushed samples answered 2xx, p95 per endpoint."""
    out = []
    for start in range(0, int(max((e[2] for e in events), default=0) // step) + 1):
        window = [e for e in events if start * step <= e[2] < (start + 1) * step]
        row: dict[str, Any] = {"from_s": start * step,
                               "retrain_running_share": round(sum(e[6] for e in window) / max(len(window), 1), 2)}
        for endpoint in ENDPOINTS[:3]:
            row[f"{endpoint} p95_ms"] = _pct([e[3] for e in window if e[1] == endpoint], 0.95)
        row["pairs_2xx"] = sum(1 for e in window if e[1] == "POST queue/submit" and e[5] == "ok")
        row["pushed_samples_2xx"] = batch * sum(1 for e in window if e[1] == "POST samples" and e[5] == "ok")
        out.append(row)
    return out


def lock_summary(samples: list[tuple[str, int, list[tuple[str, str]]]], phase: str) -> dict[str, Any]:
    mine = [s for s in samples if s[0] == phase]
    pairs = Counter(f"{waiting} <- blocked by <- {blocking}" for _, _, waits in mine for waiting, blocking in waits)
    return {"samples": len(mine), "samples_with_a_lock_wait": sum(1 for s in mine if s[2]),
            "mean_active_backends": sum(s[1] for s in mine) / max(len(mine), 1),
            "mean_lock_waiters": sum(len(s[2]) for s in mine) / max(len(mine), 1),
            "top_waits": pairs.most_common(8)}


def _pct(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def load_notes(args: argparse.Namespace, setup: dict[str, Any]) -> str:
    """The notes under the results table: how the stack was set up and how to read the figures."""
    return (
        f"Setup: {args.labeled:,} labeled + {args.unlabeled:,} unlabeled BBC paragraphs; a first model (frozen) "
        f"trained through the API before the load; retrain (frozen) requested at t=0 of the load. gunicorn "
        f"{setup['gunicorn']}; Celery `{setup['celery'][0]}` and `{setup['celery'][1]}` (docker/compose.yaml's "
        f"split, concurrency {args.scoring_concurrency} for scoring on 2 cores); own redis-server; PostgreSQL 16 on "
        f"5432. {args.annotators} annotators, one user and thread each, closed loop with {args.think:g} s think "
        "time (`GET queue/next?n=1`, then `POST queue/{id}/submit/` with the true label). Pushes go out on a fixed "
        "schedule; a late batch is sent at once, so achieved samples/s below the target means the server did not "
        "keep up. Expected answers, not errors: an empty lease list when nothing is pending, 409 on submit when the "
        "lease was lost. Baselines: each workload alone for "
        f"{args.baseline:g} s on the same warm stack just before the load. Latencies include client-side queuing in "
        "the load generator, which runs on the same 2 cores (its CPU share is in the table). Every gunicorn worker "
        "loads the serving model before the clock starts (POST /predict/ warm-up); the retrained version is loaded "
        "on first use inside the measured load, as in production.\n\n"
        "The machine is shared with other engineers' test runs during this measurement: 'everything else on the "
        "machine' is their CPU share, and the load averages at the start and end of the load are in the table."
    )


def detail_tables(integrity: dict[str, Any], cpu_share: dict[str, float], cpu_s: dict[str, float],
                  locks: dict[str, Any]) -> tuple[str, str, str]:
    """The integrity checks, the CPU shares and the most frequent lock waits, as markdown."""
    checks = markdown_table(["integrity check (all phases, after the load, in PostgreSQL)", "value"],
                            [[k.replace("_", " "), v] for k, v in integrity.items()])
    cpu_table = markdown_table(["process (share of both cores during the load)", "share", "CPU s"],
                               [[k, f"{v:.1%}", f"{cpu_s[k]:.0f}" if k in cpu_s else ""] for k, v in cpu_share.items()])
    waits = markdown_table(["most frequent lock waits during the load (waiting query <- blocking query)", "samples"],
                           [[w.replace("|", "/"), n] for w, n in locks["load"]["top_waits"]]) if locks["load"][
        "top_waits"] else "No backend of this database waited on a lock in any sample."
    return checks, cpu_table, waits
