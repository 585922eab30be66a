"""``relabel``: the client from the shell.

    relabel status [PROJECT] [--job ID]
    relabel import PROJECT FILE [--format csv|jsonl] [--source NAME] [--batch-size N]
    relabel export PROJECT [-o FILE] [--format jsonl|csv|labelstudio|parquet]
    relabel push PROJECT FILE [-o FILE]
    relabel train PROJECT [--mode MODE] [--seeds N] [--wait] [--timeout S]

The server and credentials come from ``--url``/``RELABEL_URL``, ``--token``/``RELABEL_TOKEN``, or
``--username``/``RELABEL_USERNAME`` with ``RELABEL_PASSWORD`` (asked for on a terminal when missing).
Exit status: 0 done, 1 the server or a file refused, 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from relabel_client import errors
from relabel_client.client import Client
from relabel_client.rows import read_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relabel", description="Command line for the Relabel REST API.")
    parser.add_argument("--url", help="server, e.g. http://127.0.0.1:8000 (default: $RELABEL_URL)")
    parser.add_argument("--token", help="API token (default: $RELABEL_TOKEN)")
    parser.add_argument("--username", help="log in as this user (password: $RELABEL_PASSWORD or a prompt)")
    parser.add_argument("--session", action="store_true", help="log in with a session cookie instead of a token")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", help="server health and projects, or one project's counts, "
                                                "queue and latest jobs")
    status.add_argument("project", type=int, nargs="?")
    status.add_argument("--job", type=int, help="show this job instead")

    imports = commands.add_parser("import", help="bulk import examples from a CSV or JSONL file")
    imports.add_argument("project", type=int)
    imports.add_argument("file", help="a .csv or .jsonl file (the export's formats), or - for JSONL on stdin")
    imports.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    imports.add_argument("--source", help="source of rows that do not name one (default: import)")
    imports.add_argument("--batch-size", type=int, default=1000, help="rows per request (at most 10,000)")
    imports.add_argument("--without-history", action="store_true",
                         help="leave out the annotations column of an export (replaying it is for admins)")

    export = commands.add_parser("export", help="every example with labels and history")
    export.add_argument("project", type=int)
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--format", choices=["jsonl", "csv", "labelstudio", "parquet"], default="jsonl")

    push = commands.add_parser("push", help="push production samples; prints ids and predictions as JSON")
    push.add_argument("project", type=int)
    push.add_argument("file", help="a .csv or .jsonl file of samples (text, external_id, metadata, "
                                   "observed_at), or - for JSONL on stdin")
    push.add_argument("--format", choices=["csv", "jsonl"])
    push.add_argument("--batch-size", type=int, default=1000, help="samples per request (at most 1,000)")
    push.add_argument("-o", "--output", help="write the result here instead of standard output")

    train = commands.add_parser("train", help="start a training (and wait for it)")
    train.add_argument("project", type=int)
    train.add_argument("--mode", choices=["auto", "frozen", "gradual", "full", "lora"])
    train.add_argument("--seeds", type=int)
    train.add_argument("--wait", action="store_true", help="wait until the job ends (progress bar with tqdm)")
    train.add_argument("--wait-timeout", type=float, help="give up waiting after this many seconds")
    train.add_argument("--no-progress", action="store_true", help="no progress bar while waiting")
    return parser


def _client(args: argparse.Namespace) -> Client:
    token = args.token or os.environ.get("RELABEL_TOKEN") or None
    username = args.username or (None if token else os.environ.get("RELABEL_USERNAME") or None)
    password = None
    if username:
        password = os.environ.get("RELABEL_PASSWORD") or None
        if password is None and sys.stdin.isatty():
            password = getpass.getpass(f"password for {username}: ")
        if not password:
            raise errors.RelabelError("set RELABEL_PASSWORD (or use a token) to log in as " + username)
    url = args.url or os.environ.get("RELABEL_URL") or "http://127.0.0.1:8000"
    return Client(url, token=token, username=username, password=password,
                  auth="session" if args.session else "token", timeout=args.timeout)


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _job_line(job: dict[str, Any]) -> str:
    stage = f", {job['stage']}" if job.get("stage") else ""
    message = f": {job['message']}" if job.get("message") else ""
    return f"job {job['id']} {job.get('kind', '')} {job['status']} ({float(job.get('progress') or 0):.0%}{stage}){message}"


def _status(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.job is not None:
        job = client.get_job(args.job)
        if args.json:
            _print_json(job, out)
        else:
            out.write(_job_line(dict(job)) + "\n")
            if job.get("result"):
                out.write(f"result: {json.dumps(job['result'], ensure_ascii=False)}\n")
            if job.get("error"):
                out.write(f"error: {job['error']}\n")
        return 0 if job.get("status") != "failed" else 1
    if args.project is None:
        health = client.health()
        projects = list(client.list_projects())
        if args.json:
            _print_json({"health": health, "projects": projects}, out)
            return 0
        out.write(f"{client.site.rstrip('/')}: {health.get('status')} (database {health.get('database')}, "
                  f"broker {health.get('broker')})\n")
        for p in projects:
            version = p.get("model_version")
            out.write(f"project {p['id']} {p['name']!r}: {p.get('examples', 0)} examples, {p.get('labeled', 0)} "
                      f"labeled, {p.get('queued', 0)} queued, model {'v' + str(version) if version else 'none'}, "
                      f"role {p.get('role')}\n")
        if not projects:
            out.write("no projects\n")
        return 0
    project = client.get_project(args.project)
    queue = client.queue_stats(args.project)
    jobs = []
    for job in client.list_jobs(args.project, page_size=5):
        jobs.append(job)
        if len(jobs) == 5:
            break
    if args.json:
        _print_json({"project": project, "queue": queue, "jobs": jobs}, out)
        return 0
    version = project.get("model_version")
    out.write(f"project {project['id']} {project['name']!r} ({project.get('task')}; labels: "
              f"{', '.join(project.get('labels', []))}), your role: {project.get('role')}\n")
    out.write(f"examples {project.get('examples', 0)}, labeled {project.get('labeled', 0)}, queued "
              f"{project.get('queued', 0)}, serving model {'v' + str(version) if version else 'none'}\n")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted((queue.get("by_reason") or {}).items())) or "-"
    out.write(f"queue: {queue.get('pending', 0)} pending, {queue.get('leased', 0)} leased, {queue.get('done', 0)} "
              f"done; open by reason: {reasons}\n")
    for job in jobs:
        out.write(_job_line(dict(job)) + "\n")
    return 0


def _import(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = list(read_file(args.file, args.format))
    if args.source:
        rows = [{"source": args.source, **row} for row in rows]
    if args.without_history:
        rows = [{k: v for k, v in row.items() if k != "annotations"} for row in rows]
    result = client.import_examples(args.project, rows, batch_size=args.batch_size, metadata_columns=[])
    if args.json:
        _print_json(result, out)
    else:
        out.write(f"{args.file}: {result['created']} created, {result['unchanged']} unchanged, "
                  f"{result['updated']} updated\n")
    return 0


def _export(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.output:
        written = client.export_to(args.project, args.output, format=args.format)
        err.write(f"{args.output}: {written:,} bytes\n")
        return 0
    binary = getattr(out, "buffer", None)
    for line in client.export_lines(args.project, format=args.format):
        if binary is not None:
            binary.write(line)
        else:
            out.write(line.decode("utf-8"))
    if binary is not None:
        binary.flush()
    return 0


def _push(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = list(read_file(args.file, args.format))
    result = client.push_samples(args.project, rows, batch_size=args.batch_size, metadata_columns=[])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            _print_json(result, handle)
        err.write(f"{len(result['ids'])} samples pushed ({result['created']} new); result in {args.output}\n")
    else:
        _print_json(result, out)
    return 0


def _train(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = client.train(args.project, mode=args.mode, seeds=args.seeds)
    if not args.wait:
        if args.json:
            _print_json(job, out)
        else:
            out.write(_job_line(dict(job)) + "\n")
        return 0
    final = client.wait_for_job(job, timeout=args.wait_timeout, progress=False if args.no_progress else None,
                                raise_on_failure=False)
    if args.json:
        _print_json(final, out)
    else:
        out.write(_job_line(dict(final)) + "\n")
        if final.get("result"):
            out.write(f"result: {json.dumps(final['result'], ensure_ascii=False)}\n")
        if final.get("error"):
            out.write(f"error: {final['error']}\n")
    return 0 if final.get("status") == "succeeded" else 1


COMMANDS = {"status": _status, "import": _import, "export": _export, "push": _push, "train": _train}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        with _client(args) as client:
            return COMMANDS[args.command](client, args, out, err)
    except errors.APIError as error:
        err.write(f"relabel: {error.status} {error.code}\n")
        for problem in error.errors:
            where = " ".join(part for part in (
                f"row {problem['index']}" if problem.get("index") is not None else "",
                str(problem.get("field") or "")) if part)
            err.write(f"  {where + ': ' if where else ''}{problem.get('message', '')}\n")
        if error.rows_written:
            err.write(f"  ({error.rows_written} rows of earlier batches were stored; importing again is safe)\n")
        return 1
    except errors.JobTimeout as error:
        err.write(f"relabel: {error}\n")
        return 1
    except (errors.RelabelError, ValueError, OSError) as error:
        err.write(f"relabel: {error}\n")
        return 1
    except KeyboardInterrupt:
        err.write("relabel: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
