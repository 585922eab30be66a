"""Import (CSV or JSONL upload with a preview and a column map) and export (links to the streamed API).

The upload goes through the same services as ``manage.py import_examples``: ``services.files.parse_file``
then ``services.examples.examples_import``, all or nothing, with every problem named by its file line.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_http_methods

from annotator.errors import InvalidInput, ServiceError
from annotator.models import Role, Source
from annotator.selectors import access
from annotator.selectors import projects as project_selectors
from annotator.services import examples as example_services
from annotator.services import files as file_services
from annotator.services.files import file_preview
from annotator.views.access import UNPROCESSABLE, error_list, project_context, project_or_404, render_page

NONE = ""  # the "(none)" choice of an optional column
SOURCES = (Source.IMPORT, Source.SEED, Source.PRODUCTION)


def _mapping(request: HttpRequest, columns: list[str]) -> dict[str, str]:
    """The chosen columns, defaulting to the conventional names when the file has them."""

    def pick(field: str, default: str) -> str:
        if field in request.POST:
            return request.POST[field]
        return default if default in columns else NONE

    return {"text": pick("text_column", "text"), "label": pick("label_column", "label"),
            "external_id": pick("id_column", "external_id")}


def _rows_for_import(rows: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    if mapping["label"] == NONE:
        rows = [{k: v for k, v in row.items() if k not in ("label", "labels")} for row in rows]
    if mapping["external_id"] == NONE:
        rows = [{k: v for k, v in row.items() if k != "external_id"} for row in rows]
    return rows


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    context: dict[str, Any] = {**project_context(request, project, "data"), "sources": SOURCES,
                               "source": request.POST.get("source", Source.IMPORT), "labels": project_selectors.project_labels(project)}
    status = 200
    upload = request.FILES.get("file")
    if request.method == "POST":
        if upload is None:
            context["errors"] = [{"message": "Choose a CSV or JSONL file first."}]
            return render_page(request, "import.html", context, partial="result", status=UNPROCESSABLE)
        data = upload.read()
        context["filename"] = upload.name
        try:
            fmt = request.POST.get("format") or file_services.guess_format(upload.name)
            if fmt not in file_services.FORMATS:
                raise InvalidInput([{"field": "format", "message": "format must be csv or jsonl"}])
            context["format"] = fmt
            preview = file_preview(data, fmt)
            context["preview"] = preview
            mapping = _mapping(request, preview.columns)
            context["mapping"] = mapping
            if request.POST.get("action") == "import":
                context["result"] = _import(request, project, data, fmt, mapping)
        except ServiceError as error:
            context["errors"] = error_list(error)
            status = UNPROCESSABLE
    return render_page(request, "import.html", context, partial="result", status=status)


def _import(request: HttpRequest, project: Any, data: bytes, fmt: str, mapping: dict[str, str]) -> dict[str, Any]:
    if mapping["text"] == NONE:
        raise InvalidInput([{"field": "text", "message": "choose the column that holds the text"}])
    columns = file_services.ColumnMap(
        text=mapping["text"],
        label=mapping["label"] or "\x00no label column",
        external_id=mapping["external_id"] or "\x00no id column",
    )
    rows, lines = file_services.parse_file(data, fmt, columns)
    source = request.POST.get("source") or Source.IMPORT
    result = example_services.examples_import(
        project=project, user=request.user, rows=_rows_for_import(rows, mapping), default_source=source,
        max_rows=None, allow_history=access.role_of(request.user, project) == Role.ADMIN, line_numbers=lines,
    )
    return {"created": result.created, "unchanged": result.unchanged, "updated": result.updated,
            "total": len(rows)}


@login_required
@require_GET
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    context = {**project_context(request, project, "data"), "example_count": project.example_count}
    return render_page(request, "export.html", context)
