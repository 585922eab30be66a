"""Webhooks: what an event costs the request that causes it, and how fast deliveries go out.

    .venv/bin/python bench/webhooks.py [--leases 300] [--deliveries 300] [--json bench/results/webhooks.json]

Runs on a scratch SQLite database under a temporary DATA_DIR (migrated here), or on the database DATABASE_URL
names (an empty one: it is migrated and filled). Measures, per lease of one queue item: no endpoint, one
endpoint that listens to ``queue.low`` (the crossing check counts the queue), and the lease that fires the
event (a delivery row written). Then the delivery attempt itself (claim, target check, HMAC signature, POST
to an ``http.server`` receiver on 127.0.0.1, record), made in this process one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _setup() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="relabel-bench-webhooks-"))
    os.environ["WEBHOOK_ALLOW_PRIVATE"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2), "n": len(ordered)}


def _leases(project: Any, users: list[Any], n: int) -> list[float]:
    from annotator.services.queue import queue_lease

    took = []
    for i in range(n):
        started = time.perf_counter()
        queue_lease(project=project, user=users[i % len(users)], n=1)
        took.append(time.perf_counter() - started)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, default=300)
    parser.add_argument("--deliveries", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    _setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotator import dispatch
    from annotator.models import Project, WebhookDelivery, WebhookEndpoint
    from annotator.services.examples import examples_import
    from annotator.services.projects import member_set, project_create, project_update_settings
    from annotator.services.queue import queue_add
    from annotator.services.webhook_delivery import delivery_attempt
    from annotator.services.webhooks import webhook_create, webhook_ping
    from tests.annotator.webhook_receiver import Receiver

    dispatch.send = lambda *a, **k: True  # no broker here: only the delivery rows and the attempts are timed
    make = get_user_model().objects.create_user  # no password: nothing to hash
    owner = make(username=f"bench{time.time_ns()}")
    rows: dict[str, Any] = {}
    for case in ("no endpoint", "an endpoint listening to queue.low", "the lease that fires queue.low"):
        project = project_create(user=owner, name=case, task="single_label", labels=["a", "b"])
        # One annotator per lease: a lease renews the items its user already holds before it takes new ones.
        users = []
        for _ in range(args.leases):
            users.append(make(username=f"b{time.time_ns()}"))
            member_set(project=project, username=users[-1].username, role="annotator")
        ids = examples_import(project=project, user=owner,
                              rows=[{"text": f"text {i}", "external_id": str(i)} for i in range(args.leases + 50)]).ids
        queue_add(project=project, examples=ids, reason="uncertain")
        if case != "no endpoint":
            WebhookEndpoint.objects.create(project=project, url="http://127.0.0.1:9/", secret="s", events=["queue.low"])
        if case == "the lease that fires queue.low":
            took = []
            for i in range(min(args.leases, 100)):
                # every lease crosses the threshold: the threshold is what is left, and the last crossing forgotten
                left = project.queue_items.filter(status="pending").count()
                project_update_settings(project=project, settings={"webhook_queue_low": left})
                project.refresh_from_db()
                Project.objects.filter(pk=project.pk).update(queue_low_at=None)
                took += _leases(project, users[i:i + 1], 1)
            assert WebhookDelivery.objects.filter(endpoint__project=project).count() == len(took)
        else:
            took = _leases(project, users, args.leases)
        rows[case] = _ms(took)

    from annotator.services.webhooks import queue_low_check

    checked = project_create(user=owner, name="check", task="single_label", labels=["a", "b"])
    ids = examples_import(project=checked, user=owner,
                          rows=[{"text": f"t {i}", "external_id": str(i)} for i in range(5000)]).ids
    queue_add(project=checked, examples=ids, reason="uncertain")
    WebhookEndpoint.objects.create(project=checked, url="http://127.0.0.1:9/", secret="s", events=["queue.low"])
    took = []
    for _ in range(args.leases):
        started = time.perf_counter()
        queue_low_check(project=checked)
        took.append(time.perf_counter() - started)
    rows["the queue.low check alone (5,000 pending)"] = _ms(took)

    with Receiver() as receiver:
        project = project_create(user=owner, name="deliveries", task="single_label", labels=["a", "b"])
        endpoint = webhook_create(project=project, user=owner, data={"url": receiver.url, "events": ["job.failed"]})
        pending = [webhook_ping(endpoint=endpoint, user=owner).pk for _ in range(args.deliveries)]
        took = []
        for pk in pending:
            started = time.perf_counter()
            assert delivery_attempt(pk) == "delivered"
            took.append(time.perf_counter() - started)
        rows["a delivery attempt (2xx)"] = {**_ms(took), "per_second": round(len(took) / sum(took), 1)}

    result = {"database": connection.vendor, "cases": rows}
    print(f"database: {connection.vendor}")
    print(f"{'case':<44} {'p50 ms':>8} {'p95 ms':>8} {'n':>5}")
    for name, row in rows.items():
        print(f"{name:<44} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['n']:>5}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
