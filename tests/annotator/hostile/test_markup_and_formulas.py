"""Markup in texts, label names, project names, metadata, notes and job messages is escaped on every
page that shows it; the CSV export neutralises cells that a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from annotator.models import DriftWindow, ExampleScore, Job, ModelVersion, QueueItem, Role
from annotator.services.annotations import annotation_create
from annotator.services.examples import examples_import
from annotator.services.projects import member_set, project_create, project_update_settings
from annotator.services.queue import queue_add, queue_lease
from tests.annotator.views.factories import trained_metrics

LABEL = "<script>alert(1)</script>"
TEXT = "<img src=x onerror=alert(1)>"
ATTRIBUTE_BREAKOUT = "\"'><svg onload=alert(2)>"
PROJECT_NAME = "<svg onload=alert(3)>"
GUIDELINES = "<iframe src=javascript:alert(4)></iframe>"
METADATA_VALUE = "<script>alert(5)</script>"
NOTE = "</textarea><script>alert(6)</script>"
JOB_MESSAGE = "<img src=x onerror=alert(7)>"
LABELS = [LABEL, "plain", "a & <b>bold</b>"]
PAYLOADS = [LABEL, TEXT, ATTRIBUTE_BREAKOUT, PROJECT_NAME, GUIDELINES, METADATA_VALUE, NOTE, JOB_MESSAGE,
            "<b>bold</b>"]
# The raw start of every payload: none of them may reach a page unescaped, even in part.
MARKERS = ["<script>alert", "<img src=x", "<svg onload", "<iframe src", "<b>bold", "'><svg"]


@pytest.fixture
def hostile_project(admin: Any, reviewer: Any, annotator: Any) -> dict[str, Any]:
    """A project whose every user-supplied string is markup, with scores, a model, jobs and drift windows
    so that each page has something to show."""
    project = project_create(user=admin, name=PROJECT_NAME, task="single_label", labels=list(LABELS))
    member_set(project=project, username=reviewer.username, role=Role.REVIEWER)
    member_set(project=project, username=annotator.username, role=Role.ANNOTATOR)
    project_update_settings(project=project, settings={"guidelines": GUIDELINES, "overlap": 2})
    rows = [{"external_id": f"x{i}", "text": text, "label": LABELS[i % 3],
             "metadata": {"<b>bold</b>": METADATA_VALUE}}
            for i, text in enumerate([TEXT, ATTRIBUTE_BREAKOUT, TEXT + " again", LABEL, NOTE, TEXT + "!"])]
    rows += [{"external_id": f"u{i}", "text": f"{TEXT} unlabeled {i}"} for i in range(4)]
    examples = list(project.examples.filter(pk__in=examples_import(project=project, user=admin, rows=rows).ids)
                    .order_by("id"))
    for example in examples[:3]:
        annotation_create(example=example, user=reviewer, labels=[LABELS[1]], note=NOTE)
        annotation_create(example=example, user=annotator, labels=[LABELS[0]], note=NOTE)
    version = ModelVersion.objects.create(
        project=project, number=1, status=ModelVersion.Status.READY, mode="frozen", n_train=6,
        metrics=trained_metrics(LABELS), finished_at=timezone.now())
    project.serving_version = version
    project.save(update_fields=["serving_version"])
    ExampleScore.objects.bulk_create([
        ExampleScore(example=example, model_version=version, probs=[0.5, 0.3, 0.2], predicted=[LABELS[0]],
                     confidence=0.5, entropy=0.9, margin=0.2, label_quality=0.05 * i, is_issue=True,
                     suggested_label=LABELS[0])
        for i, example in enumerate(examples[:6])])
    queue_add(project=project, examples=examples[6:], reason=QueueItem.Reason.UNCERTAIN, priority=2.0,
              explanation=f"uncertain between {LABEL} and {LABELS[2]}", model_version_id=version.id)
    job = Job.objects.create(project=project, kind=Job.Kind.TRAIN, status=Job.Status.FAILED, stage=JOB_MESSAGE,
                             message=JOB_MESSAGE, error=JOB_MESSAGE, log=JOB_MESSAGE)
    DriftWindow.objects.create(
        project=project, model_version=version, sequence=0, n=200, start=timezone.now(), end=timezone.now(),
        class_distribution={LABELS[0]: 0.6, LABELS[1]: 0.3, LABELS[2]: 0.1}, class_shift=0.2,
        mean_confidence=0.6, confidence_shift=0.3, embedding_drift=0.01,
        anomalies={"alerts": [LABEL]}, alert=True, reasons=[f"shift toward {LABEL}"], actions=[JOB_MESSAGE])
    return {"project": project, "job": job, "examples": examples}


def _pages(project_id: int, job_id: int) -> list[str]:
    p = f"/projects/{project_id}"
    return ["/", f"{p}/", f"{p}/annotate/", f"{p}/annotate/?reopen=1", f"{p}/review/",
            f"{p}/review/?label={LABELS[0]}", f"{p}/review/agreement/", f"{p}/models/", f"{p}/drift/",
            f"{p}/import/", f"{p}/export/", f"{p}/jobs/{job_id}/"]


def assert_escaped(html: str, where: str) -> None:
    for marker in MARKERS:
        assert marker not in html, f"{where}: raw {marker!r} in the page"


@pytest.mark.django_db
@pytest.mark.parametrize("user_fixture", ["admin", "annotator"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx partial"])
def test_markup_is_escaped_on_every_page(hostile_project: dict[str, Any], request: Any, user_fixture: str,
                                         htmx: bool) -> None:
    user = request.getfixturevalue(user_fixture)
    project, job = hostile_project["project"], hostile_project["job"]
    queue_lease(project=project, user=user, n=1)  # the annotate page shows a leased text and its labels
    client = Client(headers={"HX-Request": "true"} if htmx else {})
    client.force_login(user)
    shown: list[str] = []

    for url in _pages(project.id, job.id):
        response = client.get(url)
        # 286 is htmx's "stop polling" on a finished job's status.
        assert response.status_code in (200, 286, 403, 404), (url, response.status_code)
        html = response.content.decode()
        assert_escaped(html, url)
        shown.append(html)

    # The payloads were on the pages, escaped: the test looked at real content, not at empty pages.
    # (No page shows metadata; the annotate partial leaves the guidelines to the full page.)
    everything = "\n".join(shown)
    expected = [LABEL, TEXT, PROJECT_NAME] + ([] if htmx else [GUIDELINES]) if user_fixture == "annotator" \
        else [p for p in PAYLOADS if p != METADATA_VALUE]
    for payload in expected:
        assert escape(payload) in everything, f"{payload!r} is shown nowhere"


@pytest.mark.django_db
def test_markup_in_an_uploaded_file_is_escaped_in_the_preview_and_the_errors(
        hostile_project: dict[str, Any], admin: Any) -> None:
    project = hostile_project["project"]
    client = Client()
    client.force_login(admin)
    data = f'text,{LABEL},label\n"{TEXT}","{METADATA_VALUE}","{LABEL}"\n"{NOTE}",x,unknown {TEXT}\n'.encode()

    for action in ("preview", "import"):
        response = client.post(f"/projects/{project.id}/import/",
                               {"file": SimpleUploadedFile(f"{PROJECT_NAME}.csv", data), "action": action})
        html = response.content.decode()
        assert response.status_code in (200, 422)
        assert_escaped(html, action)
        assert escape(TEXT) in html


@pytest.mark.django_db
def test_a_review_decision_with_a_markup_label_is_escaped_in_the_answer(hostile_project: dict[str, Any],
                                                                          reviewer: Any) -> None:
    project, example = hostile_project["project"], hostile_project["examples"][0]
    client = Client(headers={"HX-Request": "true"})
    client.force_login(reviewer)

    for body in ({"row_action": f"relabel:{example.id}", f"label_{example.id}": LABEL},
                 {"row_action": f"relabel:{example.id}", f"label_{example.id}": f"unknown {TEXT}"}):
        response = client.post(f"/projects/{project.id}/review/decisions/", body)
        assert response.status_code in (200, 422)
        assert_escaped(response.content.decode(), str(body))


# --- CSV formula injection ---------------------------------------------------------------------------------
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.django_db
def test_no_csv_export_cell_starts_like_a_formula(admin: Any, api_client: Any) -> None:
    labels = ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "plain"]
    project = project_create(user=admin, name="formulas", task="single_label", labels=labels)
    rows = [
        {"external_id": "=HYPERLINK(\"http://evil\")", "text": "=1+1", "label": labels[0]},
        {"external_id": "+id", "text": "+SUM(A1:A9)", "label": labels[1]},
        {"external_id": "-id", "text": "-2+3", "label": labels[2], "source": "-A1"},
        {"external_id": "@id", "text": "@SUM(1)", "label": labels[3]},
        {"external_id": "tab", "text": "\t=1", "label": labels[4]},
        {"external_id": "cr", "text": "\r=1"},
        {"external_id": "guarded", "text": "'=already guarded", "label": labels[0]},
    ]
    examples_import(project=project, user=admin, rows=rows)

    response = api_client(admin).get(f"/api/v1/projects/{project.id}/export/?format=csv")
    body = b"".join(response.streaming_content).decode()
    table = list(csv.reader(io.StringIO(body, newline="")))

    assert len(table) == len(rows) + 1
    dangerous = [(r, c, cell) for r, row in enumerate(table) for c, cell in enumerate(row)
                 if cell.startswith(FORMULA_STARTS)]
    assert dangerous == []
    by_id = {row[1]: row for row in table[1:]}
    assert by_id["'=HYPERLINK(\"http://evil\")"][2] == "'=1+1"
    assert by_id["'-id"][3] == "'-A1"  # the source column is guarded too
    assert by_id["guarded"][2] == "''=already guarded"  # one more apostrophe, so the import gives it back
