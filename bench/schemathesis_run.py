"""schemathesis over every operation of /api/schema/, with more cases than the test suite runs.

Runs ``tests/annotator/hostile/test_schemathesis.py`` (in-process WSGI, PostgreSQL, a staff admin's token,
a project with examples, queue items, a job and a model version) and tabulates the status codes each
operation answered to schema-valid (positive) and schema-violating (negative) cases. Every answer was
checked: no 5xx, a documented status code and content type, a body that matches the schema, and
schema-violating input refused.

    DATABASE_URL=postgresql://... REDIS_URL=redis://... SECRET_KEY=x python bench/schemathesis_run.py \
        [--examples 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _bbc import markdown_table, write_results  # noqa: E402

TEST = "tests/annotator/hostile/test_schemathesis.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50, help="cases per operation and generation mode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        stats_path = Path(folder) / "stats.json"
        env = {**os.environ, "HOSTILE_STATS": str(stats_path), "HOSTILE_MAX_EXAMPLES": str(args.examples),
               "DEBUG": "0"}
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider",
                              "-p", "no:logging"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]

    rows, totals = [], {"positive": 0, "negative": 0}
    for label, modes in sorted(stats.items(), key=lambda item: item[0].split(" ", 1)[::-1]):
        cases = {mode: sum(modes.get(mode, {}).values()) for mode in totals}
        for mode in totals:
            totals[mode] += cases[mode]
        codes: dict[str, int] = {}
        for counts in modes.values():
            for code, n in counts.items():
                codes[code] = codes.get(code, 0) + n
        rows.append([label, cases["positive"], cases["negative"],
                     ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))])
    rows.append(["**all operations**", totals["positive"], totals["negative"], ""])
    table = markdown_table(["operation", "positive cases", "negative cases", "status codes answered"], rows)
    notes = (f"{len(stats)} operations, {totals['positive'] + totals['negative']} requests in {seconds:.0f} s "
             f"(pytest: {summary}). Half of each operation's cases aim at real rows (the project, an example, "
             "a queue item, a job, a model version), half at ids hypothesis draws (most 404s). No "
             "operation is excluded: training is queued without a worker (the job row is the answer), and "
             "predictions answer 409 as no version is promoted in this world.")
    write_results("schemathesis", "schemathesis over the API schema", {
        "operations": len(stats), "examples_per_mode": args.examples, "seconds": round(seconds, 1),
        "pytest": summary, "passed": run.returncode == 0, "totals": totals, "per_operation": stats,
    }, table, notes, script="schemathesis_run")
    if run.returncode != 0:
        print(run.stdout[-6000:])
        sys.exit(run.returncode)


if __name__ == "__main__":
    main()
