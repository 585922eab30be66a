"""Formats benchmark: export and re-import a project through JSONL, Label Studio JSON and Parquet.

    DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench_formats \
        python bench/formats.py [--rows 20000] [--json bench/results/formats.json]

In-process against a scratch PostgreSQL database (dropped and re-created, then migrated): imports --rows
examples (every other one labeled, every fifth with a second person's relabel), then for each format times
the export (the same code the API streams) and the import of that file into a new project (the same
services the API and the command call), and checks that the copy has as many annotations as the original.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scratch_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--json", default=str(ROOT / "bench/results/formats.json"))
    args = parser.parse_args()
    url = os.environ.setdefault("DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/relabel_bench_formats")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    scratch_database(url)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotator.models import Annotation, Example
    from annotator.selectors.export import export_lines
    from annotator.services import formats
    from annotator.services.annotations import annotation_create
    from annotator.services.examples import examples_import
    from annotator.services.formats_hf import parquet_export
    from annotator.services.formats_labelstudio import labelstudio_export
    from annotator.services.projects import member_set, project_create

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    admin, second = users.create_user("admin", password="x"), users.create_user("second", password="x")
    labels = ["business", "sport", "politics", "tech", "entertainment"]
    project = project_create(user=admin, name="bench", task="single_label", labels=labels, settings=None)
    member_set(project=project, username="second", role="reviewer")
    rows = [{"text": f"headline number {i} about {labels[i % 5]} and more words to make it longer",
             "external_id": f"r{i}", "metadata": {"batch": i // 1000, "tags": ["a", "b"]},
             **({"label": labels[i % 5]} if i % 2 == 0 else {})} for i in range(args.rows)]
    result = examples_import(project=project, user=admin, rows=rows, max_rows=None)
    for pk in result.ids[::5]:
        annotation_create(example=Example.objects.get(pk=pk), user=second, labels=[labels[pk % 5]])
    total = Annotation.objects.filter(example__project=project).count()

    def exported(fmt: str) -> bytes:
        if fmt == "parquet":
            sink = io.BytesIO()
            parquet_export(project, sink)
            return sink.getvalue()
        if fmt == "labelstudio":
            return b"".join(labelstudio_export(project))
        return "".join(export_lines(project, fmt)).encode()

    results: dict = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                     "date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": args.rows,
                     "annotations": total, "formats": {}}
    print(f"{args.rows:,} examples, {total:,} annotations")
    print(f"{'format':<12} {'export s':>9} {'MB':>7} {'import s':>9} {'rows/s':>8}  history kept")
    for n, fmt in enumerate(("jsonl", "labelstudio", "parquet")):
        t0 = time.perf_counter()
        data = exported(fmt)
        export_s = time.perf_counter() - t0
        copy = project_create(user=admin, name=f"copy {n}", task="single_label", labels=labels, settings=None)
        t0 = time.perf_counter()
        parsed = formats.file_rows(project=copy, user=admin, fmt=fmt, data=data, limit_unpacked=False)
        formats.examples_import_file(project=copy, user=admin, parsed=parsed, allow_history=True)
        import_s = time.perf_counter() - t0
        kept = Annotation.objects.filter(example__project=copy).count() == total
        results["formats"][fmt] = {"export_seconds": round(export_s, 3), "bytes": len(data),
                                   "import_seconds": round(import_s, 3), "import_rows_per_s": round(args.rows / import_s),
                                   "history_kept": kept}
        print(f"{fmt:<12} {export_s:>9.2f} {len(data) / 2**20:>7.1f} {import_s:>9.2f} {args.rows / import_s:>8,.0f}  {kept}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
