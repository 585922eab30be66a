"""The import page (preview, column map, all-or-nothing with line numbers) and the export page."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import Annotation, Example


def _upload(name: str, content: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode("utf-8"), content_type="application/octet-stream")


CSV = "body,category,ref\nGreat phone,positive,r1\n\"Slow, noisy\",negative,r2\nIt works,,r3\n"


def test_a_preview_shows_the_first_rows_and_guesses_no_mapping(project, reviewer, page_client, htmx):
    response = page_client(reviewer).post(reverse("import", args=[project.id]),
                                          {"file": _upload("reviews.csv", CSV)}, headers=htmx)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<th scope=\"col\">body</th>" in html and "<td>Slow, noisy</td>" in html
    assert 'name="text_column"' in html
    assert not Example.objects.exists()


def test_import_with_a_column_map(project, reviewer, page_client, htmx):
    form = {"file": _upload("reviews.csv", CSV), "action": "import", "text_column": "body",
            "label_column": "category", "id_column": "ref", "source": "seed"}

    response = page_client(reviewer).post(reverse("import", args=[project.id]), form, headers=htmx)

    assert "3 new" in response.content.decode()
    examples = {e.external_id: e for e in Example.objects.filter(project=project)}
    assert set(examples) == {"r1", "r2", "r3"}
    assert examples["r2"].text == "Slow, noisy" and examples["r2"].source == "seed"
    assert Annotation.objects.get(example=examples["r1"]).labels == ["positive"]
    assert not Annotation.objects.filter(example=examples["r3"]).exists()


def test_the_label_column_can_be_left_out(project, reviewer, page_client, htmx):
    content = "text,label\nfirst,positive\nsecond,not-a-label\n"
    form = {"file": _upload("x.csv", content), "action": "import", "text_column": "text", "label_column": "",
            "id_column": ""}

    page_client(reviewer).post(reverse("import", args=[project.id]), form, headers=htmx)

    assert Example.objects.filter(project=project).count() == 2
    assert not Annotation.objects.exists()


def test_bad_rows_are_listed_by_line_and_nothing_is_written(project, reviewer, page_client, htmx):
    content = "text,label\nfine,positive\n,negative\nok,unknown-label\n"
    form = {"file": _upload("bad.csv", content), "action": "import"}

    response = page_client(reviewer).post(reverse("import", args=[project.id]), form, headers=htmx)

    html = response.content.decode()
    assert response.status_code == 422
    assert "Nothing was imported: 2 problems" in html
    assert '<td class="num">3</td><td>text</td><td>text is required and must be a string</td>' in html
    assert '<td class="num">4</td>' in html and "unknown label" in html
    assert not Example.objects.exists()


def test_jsonl_is_imported_and_malformed_lines_are_named(project, reviewer, page_client, htmx):
    good = '{"text": "hello", "external_id": "a"}\n{"text": "bye", "external_id": "b", "label": "neutral"}\n'
    bad = '{"text": "hello"}\n{"text": oops}\n'
    client = page_client(reviewer)

    ok = client.post(reverse("import", args=[project.id]), {"file": _upload("d.jsonl", good), "action": "import"},
                     headers=htmx)
    broken = client.post(reverse("import", args=[project.id]), {"file": _upload("e.jsonl", bad), "action": "import"},
                         headers=htmx)

    assert "2 new" in ok.content.decode()
    assert broken.status_code == 422 and "line 2: malformed JSON" in broken.content.decode()
    assert Example.objects.filter(project=project).count() == 2


def test_a_file_that_is_not_utf8_is_refused_with_its_line(project, reviewer, page_client, htmx):
    upload = SimpleUploadedFile("latin.csv", "text\nok\ncaf\xe9\n".encode("latin-1"))

    response = page_client(reviewer).post(reverse("import", args=[project.id]), {"file": upload}, headers=htmx)

    assert response.status_code == 422
    assert "line 3, column 4: not valid UTF-8" in response.content.decode()


def test_preview_cells_are_escaped(project, reviewer, page_client, htmx):
    content = 'text\n"<script>alert(1)</script>"\n'

    html = page_client(reviewer).post(reverse("import", args=[project.id]), {"file": _upload("x.csv", content)},
                                      headers=htmx).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_export_page_links_to_the_streamed_export(project, reviewer, page_client):
    client = page_client(reviewer)
    html = client.get(reverse("export", args=[project.id])).content.decode()

    assert f'href="/api/v1/projects/{project.id}/export/?format=jsonl"' in html
    assert f'href="/api/v1/projects/{project.id}/export/?format=csv"' in html
    assert client.get(f"/api/v1/projects/{project.id}/export/?format=csv").status_code == 200  # session auth
