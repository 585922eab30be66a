"""The ``relabel`` command against a live server: status, import, export, push, train."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from relabel_client.cli import main

from annotator.models import Example, Job, Project
from tests.client.conftest import PASSWORD


@pytest.fixture
def env(server: str, reviewer: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The command's configuration from the environment, as a user would set it."""
    values = {"RELABEL_URL": server, "RELABEL_USERNAME": reviewer.username, "RELABEL_PASSWORD": PASSWORD}
    monkeypatch.delenv("RELABEL_TOKEN", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_import_a_jsonl_file_and_a_csv_file(env: dict[str, str], project: Project, tmp_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": f"row {i}", "external_id": f"j{i}", "label": "positive"})
                               for i in range(4)) + "\n", encoding="utf-8")
    code, out, err = run("import", str(project.id), str(jsonl))
    assert (code, err) == (0, "")
    assert "4 created, 0 unchanged" in out

    csv = tmp_path / "rows.csv"
    csv.write_text('text,external_id,label,metadata\n"hello, world",c1,negative,"{""k"": 1}"\nplain,c2,,\n',
                   encoding="utf-8")
    code, out, _ = run("import", str(project.id), str(csv), "--source", "seed")
    assert code == 0 and "2 created" in out
    hello = Example.objects.get(project=project, external_id="c1")
    assert hello.text == "hello, world" and hello.metadata == {"k": 1} and hello.source == "seed"
    assert Example.objects.get(project=project, external_id="c2").label_source in ("", None)


def test_import_reports_the_apis_errors_and_exits_1(env: dict[str, str], project: Project, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok", "label": "positive"}) + "\n" + json.dumps({"text": "x", "label": "nope"}) + "\n")
    code, out, err = run("import", str(project.id), str(bad))
    assert code == 1 and out == ""
    assert "400 invalid" in err and "row 1 label" in err and "nope" in err
    assert not Example.objects.filter(project=project).exists()


def test_export_round_trips_through_import(env: dict[str, str], project: Project, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"text": f"t{i}", "external_id": f"e{i}", "label": "neutral"})
                              for i in range(3)), encoding="utf-8")
    assert run("import", str(project.id), str(rows))[0] == 0

    # export to standard output (JSONL) and to a CSV file
    code, out, _ = run("export", str(project.id))
    assert code == 0
    exported = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["external_id"] for r in exported) == ["e0", "e1", "e2"]
    target = tmp_path / "export.csv"
    code, _, err = run("export", str(project.id), "--format", "csv", "-o", str(target))
    assert code == 0 and "bytes" in err
    assert target.read_text(encoding="utf-8").splitlines()[0].startswith("id,external_id,text")

    # importing the CSV export again changes nothing; its history is only replayed for an admin
    code, _, err = run("import", str(project.id), str(target))
    assert code == 1 and "row 0 annotations: only a project admin" in err
    code, out, err = run("import", str(project.id), str(target), "--without-history")
    assert code == 0 and "0 created, 3 unchanged" in out, err


def test_status_shows_the_server_the_projects_and_one_project(env: dict[str, str], project: Project) -> None:
    code, out, _ = run("status")
    assert code == 0
    assert ": ok (database ok" in out and f"project {project.id} 'Reviews'" in out

    code, out, _ = run("status", str(project.id))
    assert code == 0
    assert "labels: positive, negative, neutral" in out and "queue: 0 pending" in out

    code, out, _ = run("--json", "status", str(project.id))
    body = json.loads(out)
    assert body["project"]["id"] == project.id and body["queue"]["pending"] == 0 and body["jobs"] == []

    code, _, err = run("status", str(project.id + 999))
    assert code == 1 and "404 not_found" in err


def test_push_and_train(env: dict[str, str], project: Project, tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"text": "live one", "external_id": "p1"}) + "\n", encoding="utf-8")
    code, out, _ = run("push", str(project.id), str(samples))
    assert code == 0
    assert json.loads(out)["created"] == 1 and json.loads(out)["predictions"] is None

    code, out, _ = run("train", str(project.id), "--mode", "frozen")
    assert code == 0 and "train queued" in out
    job = Job.objects.get(project=project, kind="train")
    code, out, _ = run("status", "--job", str(job.id))
    assert code == 0 and f"job {job.id} train queued" in out

    # waiting for a training that no worker takes ends at the time limit, with exit status 1
    Job.objects.filter(pk=job.id).update(status="failed", error="out of memory")
    code, _, err = run("train", str(project.id), "--wait", "--wait-timeout", "0.3", "--no-progress")
    assert code == 1 and "still queued after 0.3 s" in err

def test_the_console_script_runs(env: dict[str, str], project: Project) -> None:
    script = Path(sys.executable).with_name("relabel")
    assert script.exists(), "the client is not installed in this environment (make install)"
    done = subprocess.run([str(script), "status", str(project.id)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert f"project {project.id} 'Reviews'" in done.stdout
