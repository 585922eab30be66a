"""Side by side with Label Studio: the same import, next/submit and export workload against ours and two
setups of Label Studio, in one run.

    python bench/labelstudio.py [--rows 20000] [--pairs 200] [--clients 8] [--client-pairs 25] [--workers 2]
                                [--batch 10000] [--ls-batch 20000] [--port 18151]

Label Studio is installed from PyPI into its own virtualenv, ``var/labelstudio-venv`` (created with
``python3.11 -m venv`` when missing; never a dependency of this project), pinned to LS_VERSION, and run twice:

- **gunicorn + PostgreSQL**, served like ours: gunicorn (same version, same worker count) on loopback,
  PostgreSQL (database ``labelstudio_bench``, LS_DATABASE_URL, re-created), DEBUG off, data directory
  ``var/labelstudio-data``; its admin user made by ``label-studio init --username --password --user-token
  --enable-legacy-api-token``;
- **as it ships**: ``label-studio start`` with its defaults (Django's development server on SQLite under
  ``var/labelstudio-data-sqlite``), the same user options, log level WARNING.

Both authenticate with a fixed legacy token (``Authorization: Token ...``). Ours: gunicorn ``annotator.wsgi``
(sync workers, WEB_CONCURRENCY = --workers), against a re-created PostgreSQL database (BENCH_DATABASE_URL),
DEBUG=0.

Workload, the same texts to all three (BBC news articles repeated to --rows, each copy numbered, unique ids):
1. import through the API, bodies encoded before the clock starts (ours: POST /api/v1/projects/{id}/examples/
   in --batch-row requests, 10,000 being its maximum; Label Studio: POST /api/projects/{id}/import with a JSON
   list of --ls-batch tasks, its synchronous import in the Community edition);
2. one client, --pairs next/submit pairs by one annotator, the three interleaved pair by pair so all see the
   same machine load (ours: GET /projects/{id}/queue/next/?n=1 + POST /queue/{item}/submit/, the queue filled
   with every imported example through the service layer ``queue_add`` beforehand, timed apart; Label
   Studio: GET /api/projects/{id}/next + POST /api/tasks/{id}/annotations/ with a choices result). Every
   click opens a new connection (bench/labelstudio_tools.py ``call``);
3. --clients clients at once, each a different annotator, each running --client-pairs pairs back to back
   (the next request as soon as the answer arrives), one server at a time, in two rounds that alternate the
   servers;
4. export of everything, fully downloaded (ours: GET /export/?format=jsonl, streamed; Label Studio:
   GET /api/projects/{id}/export?exportType=JSON&download_all_tasks=true, which includes unlabeled tasks).
Every export is then checked (every row present, every submitted label in it). Prints a table with the
ratios and writes bench/results/labelstudio.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bbc import markdown_table, write_results  # noqa: E402
from bench.labelstudio_tools import (  # noqa: E402
    GUNICORN_VERSION,
    LabelStudio,
    LabelStudioShipped,
    Ours,
    Refused,
    ensure_venv,
)

# Ours better by at least this factor (Label Studio's figure over ours), against each Label Studio setup.
TARGETS = {"import": 3.0, "next_p95": 5.0, "submit_p95": 5.0, "export": 10.0,
           "concurrent_next_p95": 5.0, "concurrent_submit_p95": 5.0}
# Ours alone: with --clients clients back to back, p95 of each click under this many milliseconds.
CONCURRENT_P95_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def workload(n: int) -> list[tuple[str, str, str]]:
    """n (external_id, text, label): the BBC articles in a fixed order, repeated, each copy numbered."""
    from training.data import load_bbc_news

    texts, labels = load_bbc_news()
    return [(f"bbc-{i}", f"{texts[i % len(texts)]}\n\n[copy {i // len(texts)}, row {i}]", labels[i % len(texts)])
            for i in range(n)]


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = call()
    return value, time.perf_counter() - t0


def latencies(prefix: str, times: dict[str, list[float]]) -> dict[str, float]:
    out = {}
    for click, values in times.items():
        out[f"{prefix}{click}_p50_ms"] = statistics.median(values)
        out[f"{prefix}{click}_p95_ms"] = percentile(values, 0.95)
    return out


def concurrent_round(tool: Any, tokens: list[str], pairs: int, truth: dict[str, str], times: dict[str, list[float]],
                     submitted: dict[int, str]) -> int:
    """Each token's client runs ``pairs`` next/submit pairs back to back, all clients at once; the latencies
    go into ``times``. Returns the number of refused clicks (Label Studio on SQLite may answer 500 under
    concurrent writes; ours must not refuse any)."""
    lock = threading.Lock()
    start = threading.Barrier(len(tokens))
    refused = [0]

    def client(token: str) -> None:
        start.wait()
        for _ in range(pairs):
            try:
                (item, text), took_next = timed(lambda: tool.next(token))
                label = truth[text]
                _, took_submit = timed(lambda item=item, label=label: tool.submit(token, item, label))
            except Refused as error:
                with lock:
                    refused[0] += 1
                    if tool.name == "ours" or refused[0] > 20:
                        raise RuntimeError(f"{tool.name} refused: {error}") from None
                continue
            with lock:
                times["next"].append(took_next * 1000)
                times["submit"].append(took_submit * 1000)
                submitted[item] = label

    threads = [threading.Thread(target=client, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return refused[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=200, help="pairs of the one-client phase, per server")
    parser.add_argument("--clients", type=int, default=8, help="clients at once in the concurrent phase")
    parser.add_argument("--client-pairs", type=int, default=25, help="pairs per client in the concurrent phase")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per import request (ours: 10,000 at most)")
    parser.add_argument("--ls-batch", type=int, default=20_000,
                        help="rows per Label Studio import request (it accepts all 20,000 at once)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, ours and Label Studio's")
    parser.add_argument("--port", type=int, default=18151,
                        help="ours; Label Studio under gunicorn gets port + 1, as shipped port + 2")
    args = parser.parse_args()

    ls_version = ensure_venv()
    data = workload(args.rows)
    truth = {text: label for _, text, label in data}
    ours_db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_labelstudio_bench")
    ls_db = os.environ.get("LS_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/labelstudio_bench")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
    tools: list[Any] = []
    try:
        print(f"starting ours and Label Studio {ls_version} twice (migrations take a minute or two each)", flush=True)
        tools.append(Ours(port=args.port, workers=args.workers, database_url=ours_db, redis_url=redis_url,
                          max_request_bytes=64 * 1024 * 1024))
        tools.append(LabelStudio(port=args.port + 1, workers=args.workers, database_url=ls_db))
        tools.append(LabelStudioShipped(port=args.port + 2))
        ours, ls_pg, ls_shipped = tools
        result: dict[str, dict[str, Any]] = {tool.name: {} for tool in tools}
        tokens = {tool.name: tool.annotator_tokens(args.clients) for tool in tools}

        for tool in tools:  # warm every server's workers and authentication paths
            for _ in range(2 * args.workers):
                tool.session.get(f"{tool.base}{tool.warm_path}")

        ls_batch = args.ls_batch or args.batch
        for tool in tools:
            size = args.batch if tool is ours else ls_batch
            bodies = [tool.import_body(data[start:start + size]) for start in range(0, len(data), size)]
            created, seconds = timed(lambda tool=tool, bodies=bodies: sum(tool.import_batch(b) for b in bodies))
            assert created == len(data), f"{tool.name} created {created} of {len(data)}"
            result[tool.name].update(import_s=seconds, import_rows_per_s=len(data) / seconds,
                                     import_mb=sum(len(b) for b in bodies) / 1e6)
            print(f"{tool.name}: imported {created:,} rows in {seconds:.1f} s", flush=True)
        queued, result[ours.name]["queue_fill_s"] = timed(ours.fill_queue)
        assert queued == len(data), queued

        one: dict[str, dict[str, list[float]]] = {t.name: {"next": [], "submit": []} for t in tools}
        submitted: dict[str, dict[int, str]] = {t.name: {} for t in tools}
        for _ in range(args.pairs):
            for tool in tools:
                (item, text), took_next = timed(lambda tool=tool: tool.next(tool.token))
                label = truth[text]
                _, took_submit = timed(lambda tool=tool, item=item, label=label: tool.submit(tool.token, item, label))
                one[tool.name]["next"].append(took_next * 1000)
                one[tool.name]["submit"].append(took_submit * 1000)
                submitted[tool.name][item] = label
        for tool in tools:
            assert len(submitted[tool.name]) == args.pairs, f"{tool.name} handed out an item twice"
            result[tool.name].update(latencies("", one[tool.name]))
        print("one client done", flush=True)

        many: dict[str, dict[str, list[float]]] = {t.name: {"next": [], "submit": []} for t in tools}
        before = {tool.name: len(submitted[tool.name]) for tool in tools}
        refused = dict.fromkeys(result, 0)
        for tool in tools:  # untimed: every client's first clicks
            concurrent_round(tool, tokens[tool.name], 1, truth, {"next": [], "submit": []}, submitted[tool.name])
        rounds = [args.client_pairs // 2, args.client_pairs - args.client_pairs // 2]
        for pairs in rounds:
            for tool in tools:
                refused[tool.name] += concurrent_round(tool, tokens[tool.name], pairs, truth, many[tool.name],
                                                       submitted[tool.name])
        for tool in tools:
            # Two clients answering one item: ours never leases an item twice; Label Studio's count is reported.
            twice = args.clients * (args.client_pairs + 1) - refused[tool.name] - (
                len(submitted[tool.name]) - before[tool.name])
            assert tool is not ours or twice == 0, f"ours leased {twice} items twice"
            result[tool.name].update(latencies("concurrent_", many[tool.name]),
                                     concurrent_refused=refused[tool.name], concurrent_items_twice=twice)
            print(f"{tool.name}: {args.clients} clients, next p95 {result[tool.name]['concurrent_next_p95_ms']:.1f} ms, "
                  f"submit p95 {result[tool.name]['concurrent_submit_p95_ms']:.1f} ms, "
                  f"{refused[tool.name]} refused", flush=True)

        for tool in tools:
            body, seconds = timed(tool.export)
            count, labeled = tool.check_export(body)
            assert count == len(data), f"{tool.name} exported {count} of {len(data)} rows"
            assert len(labeled) == len(submitted[tool.name]), \
                f"{tool.name} export has {len(labeled)} labeled of {len(submitted[tool.name])}"
            expected = {ext: label for ext, _, label in data if ext in labeled}
            assert labeled == expected, f"{tool.name} export labels differ from the submitted ones"
            result[tool.name].update(export_s=seconds, export_mb=len(body) / 1e6)
            print(f"{tool.name}: exported {count:,} rows ({len(body) / 1e6:.1f} MB) in {seconds:.2f} s", flush=True)
    finally:
        for tool in reversed(tools):
            tool.close()

    o = result[ours.name]
    o["import_and_queue_rows_per_s"] = args.rows / (o["import_s"] + o["queue_fill_s"])
    ratios = {ls.key: ratios_against(o, result[ls.name]) for ls in (ls_pg, ls_shipped)}
    report(args, ls_version, result, ratios, ours, (ls_pg, ls_shipped), ls_batch)


def ratios_against(o: dict[str, float], s: dict[str, float]) -> dict[str, float]:
    """Label Studio's figure over ours (rows/s the other way round): > 1 means ours is faster."""
    out = {"import": o["import_rows_per_s"] / s["import_rows_per_s"],
           "import_and_queue": o["import_and_queue_rows_per_s"] / s["import_rows_per_s"],
           "export": s["export_s"] / o["export_s"]}
    for prefix in ("", "concurrent_"):
        for click in ("next", "submit"):
            for q in ("p50", "p95"):
                out[f"{prefix}{click}_{q}"] = s[f"{prefix}{click}_{q}_ms"] / o[f"{prefix}{click}_{q}_ms"]
    return out


def report(args: argparse.Namespace, ls_version: str, result: dict[str, dict[str, Any]],
           ratios: dict[str, dict[str, float]], ours: Any, setups: tuple[Any, Any], ls_batch: int) -> None:
    o = result[ours.name]
    pg, shipped = (result[s.name] for s in setups)
    r_pg, r_shipped = (ratios[s.key] for s in setups)

    def target(key: str) -> str:
        if key not in TARGETS:
            return "-"
        met = r_pg[key] >= TARGETS[key] and r_shipped[key] >= TARGETS[key]
        return f">= {TARGETS[key]:g}x both: {'met' if met else 'NOT met'}"

    def ms_row(label: str, key: str) -> list[str]:
        row = [label, f"{o[key + '_ms']:.1f}", f"{pg[key + '_ms']:.1f}", f"{shipped[key + '_ms']:.1f}",
               f"{r_pg[key]:.1f}x", f"{r_shipped[key]:.1f}x", target(key)]
        if key.startswith("concurrent_") and key.endswith("p95"):
            met = o[key + "_ms"] < CONCURRENT_P95_MS
            row[-1] += f"; ours < {CONCURRENT_P95_MS:g} ms: {'met' if met else 'NOT met'}"
        return row

    rows = [
        [f"import {args.rows:,} rows, {args.batch:,} (LS {ls_batch:,}) per request (rows/s)",
         f"{o['import_rows_per_s']:,.0f}", f"{pg['import_rows_per_s']:,.0f}", f"{shipped['import_rows_per_s']:,.0f}",
         f"{r_pg['import']:.1f}x", f"{r_shipped['import']:.1f}x", target("import")],
        ["ours: import, then every row queued (service layer) (rows/s)", f"{o['import_and_queue_rows_per_s']:,.0f}",
         f"{pg['import_rows_per_s']:,.0f}", f"{shipped['import_rows_per_s']:,.0f}",
         f"{r_pg['import_and_queue']:.1f}x", f"{r_shipped['import_and_queue']:.1f}x", "-"],
    ]
    for prefix, who in (("", "1 client"), ("concurrent_", f"{args.clients} clients")):
        for click in ("next", "submit"):
            for q in ("p50", "p95"):
                rows.append(ms_row(f"{who}: {click} {q} (ms)", f"{prefix}{click}_{q}"))
    rows.append([f"export everything (s; ours JSONL {o['export_mb']:.0f} MB, LS JSON {pg['export_mb']:.0f} MB)",
                 f"{o['export_s']:.2f}", f"{pg['export_s']:.2f}", f"{shipped['export_s']:.2f}",
                 f"{r_pg['export']:.1f}x", f"{r_shipped['export']:.1f}x", target("export")])
    table = markdown_table(["measure", "ours", "LS gunicorn + PostgreSQL", "LS as shipped (SQLite)",
                            "ours better by (vs LS gunicorn)", "ours better by (vs LS as shipped)", "target"], rows)
    refused = {name: r["concurrent_refused"] for name, r in result.items() if r["concurrent_refused"]}
    twice = {name: r["concurrent_items_twice"] for name, r in result.items() if r["concurrent_items_twice"]}
    notes = (
        f"Same {args.rows:,} texts (BBC articles repeated, numbered; {o['import_mb']:.0f} MB of JSON per tool) "
        f"to all three. One client: {args.pairs} next/submit pairs by one annotator, interleaved between the "
        f"servers pair by pair. {args.clients} clients: {args.clients} annotators at once, each running "
        f"{args.client_pairs} pairs back to back, one server at a time in two rounds that alternate the servers "
        "(after one untimed pair per client). Every click opens a new connection (Connection: close). Ours and "
        f"Label Studio under gunicorn: gunicorn {GUNICORN_VERSION}, {args.workers} sync workers, PostgreSQL, "
        "DEBUG off, loopback. Label Studio "
        "as shipped: `label-studio start` (Django's development server, a thread per request, SQLite), "
        f"log level WARNING. Label Studio {ls_version} from PyPI in its own virtualenv (var/labelstudio-venv), "
        f"Community edition: synchronous JSON-list import ({ls_batch:,} rows per request), legacy token auth, "
        "export ?exportType=JSON&download_all_tasks=true (all tasks, not only labeled ones). Ours: JSON import "
        "with MAX_REQUEST_BYTES raised to 64 MiB and the project's max_text_chars to 100,000 (the longest "
        f"article has 25,504 characters). Our queue was filled with all {args.rows:,} examples through the "
        f"service layer before the clicks, in {o['queue_fill_s']:.1f} s, not in the import figure; the second "
        f"row counts it. Label Studio migrations took {setups[0].init_s:.0f} s (PostgreSQL) and "
        f"{setups[1].init_s:.0f} s (SQLite), not counted. Refused clicks (left out of the latencies): "
        f"{refused or 'none'}; items two clients answered at once: {twice or 'none'}. Ratios: > 1 means ours is faster. The machine is shared with other work, so "
        "latencies move by tens of percent between runs."
    )
    payload = {"label_studio_version": ls_version, "gunicorn": GUNICORN_VERSION, "workers": args.workers,
               "rows": args.rows, "pairs": args.pairs, "clients": args.clients, "client_pairs": args.client_pairs,
               "batch": args.batch, "ls_batch": ls_batch,
               "setups": {s.key: s.name for s in setups}, "label_studio_auth": "legacy token",
               "results": result, "ratios": ratios, "targets": TARGETS, "concurrent_p95_ms_target": CONCURRENT_P95_MS,
               "targets_met": {
                   **{f"{key}_{s.key}": ratios[s.key][key] >= v for key, v in TARGETS.items() for s in setups},
                   "concurrent_next_p95_ms": o["concurrent_next_p95_ms"] < CONCURRENT_P95_MS,
                   "concurrent_submit_p95_ms": o["concurrent_submit_p95_ms"] < CONCURRENT_P95_MS}}
    write_results("labelstudio", "Side by side with Label Studio", payload, table, notes)


if __name__ == "__main__":
    main()
