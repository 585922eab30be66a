"""The import page with Label Studio and Parquet files (preview, import, problems by task or row) and the
export page's links and labeling config."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import Annotation, Example
from tests.annotator.assertions import counts


@pytest.fixture
def page(client, reviewer):
    client.force_login(reviewer)
    return client


HTMX = {"HX-Request": "true"}


def _tasks(*items: dict) -> SimpleUploadedFile:
    return SimpleUploadedFile("export.json", json.dumps(list(items)).encode(), content_type="application/json")


def _parquet(columns: dict) -> SimpleUploadedFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return SimpleUploadedFile("data.parquet", buffer.getvalue(), content_type="application/octet-stream")


@pytest.mark.django_db
def test_a_label_studio_file_is_previewed_then_imported(project, page):
    tasks = [{"id": 1, "data": {"text": "<script>alert(1)</script>"}}, {"id": 2, "data": {"text": "fine"}}]

    preview = page.post(reverse("import", args=[project.id]), {"file": _tasks(*tasks)}, headers=HTMX)
    done = page.post(reverse("import", args=[project.id]), {"file": _tasks(*tasks), "action": "import"}, headers=HTMX)

    html = preview.content.decode()
    assert preview.status_code == 200
    assert "Label Studio JSON · 2 tasks" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert 'name="text_column"' not in html  # no column map: the text is data.text
    assert "2 new" in done.content.decode()
    assert sorted(Example.objects.values_list("external_id", flat=True)) == ["1", "2"]


@pytest.mark.django_db
def test_label_studio_problems_are_listed_by_task_and_nothing_is_written(project, page):
    tasks = [{"data": {"text": "ok"}},
             {"data": {"text": "odd"}, "annotations": [{"result": [{"type": "choices",
                                                                    "value": {"choices": ["sarcastic"]}}]}]}]

    response = page.post(reverse("import", args=[project.id]), {"file": _tasks(*tasks), "action": "import"},
                         headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 422
    assert '<th scope="col">Task</th>' in html
    assert '<td class="num">1</td>' in html and "unknown choice &#x27;sarcastic&#x27;" in html
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_a_parquet_file_is_imported_from_the_page(project, page):
    upload = _parquet({"text": ["good", "bad"], "label": ["positive", "negative"]})

    response = page.post(reverse("import", args=[project.id]), {"file": upload, "action": "import"}, headers=HTMX)

    assert "2 new" in response.content.decode()
    assert sorted(Annotation.objects.values_list("labels", flat=True)) == [["negative"], ["positive"]]


@pytest.mark.django_db
def test_parquet_problems_are_listed_by_row(project, page):
    upload = _parquet({"text": ["good", "bad"], "label": ["positive", "sarcastic"]})

    response = page.post(reverse("import", args=[project.id]), {"file": upload, "action": "import"}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 422
    assert '<th scope="col">Row</th>' in html and "row 1: unknown label" in html
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_an_annotator_cannot_use_the_import_page(project, client, annotator):
    client.force_login(annotator)

    response = client.post(reverse("import", args=[project.id]), {"file": _tasks({"data": {"text": "a"}}), "action": "import"})

    assert response.status_code in (403, 404)
    assert counts() == (0, 0)


@pytest.mark.django_db
def test_the_export_page_links_every_format_and_shows_the_labeling_config(make_project, admin, client):
    project = make_project(admin, labels=["good", 'say "hi" <now>'])
    client.force_login(admin)

    html = client.get(reverse("export", args=[project.id])).content.decode()

    for fmt in ("jsonl", "csv", "labelstudio", "parquet"):
        assert f"?format={fmt}" in html
    assert "&lt;Choices name=&quot;label&quot; toName=&quot;text&quot; choice=&quot;single&quot;&gt;" in html
    # The label is escaped once for XML and once more for HTML.
    assert "&lt;Choice value=&quot;say &amp;quot;hi&amp;quot; &amp;lt;now&amp;gt;&quot;/&gt;" in html
