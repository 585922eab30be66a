"""Import (CSV or JSONL upload with a preview and a column map; Label Studio JSON or Parquet with a preview)
and export (links to the streamed API).

The upload goes through the same services as ``manage.py import_examples``: ``services.formats.file_rows``
then ``services.formats.examples_import_file``, all or nothing, with every problem named by its file line
(CSV, JSONL), task (Label Studio) or row (Parquet).
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
from annotator.services import files as file_services
from annotator.services import formats
from annotator.services.files import FilePreview, file_preview
from annotator.services.formats_labelstudio import labeling_config
from annotator.views.access import UNPROCESSABLE, error_list, project_context, project_or_404, render_page

NONE = ""  # the "(none)" choice of an optional column
SOURCES = (Source.IMPORT, Source.SEED, Source.PRODUCTION)
UPLOAD_FORMATS = ("csv", "jsonl", "labelstudio", "parquet")
MAPPED_FORMATS = ("csv", "jsonl")  # the formats whose columns the page lets people choose
UNIT = {"csv": "line", "jsonl": "line", "labelstudio": "task", "parquet": "row"}


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
                               "source": request.POST.get("source", Source.IMPORT), "unit": "line",
                               "format_choices": [(f, formats.FORMAT_NAMES[f]) for f in UPLOAD_FORMATS],
                               "labels": project_selectors.project_labels(project)}
    status = 200
    upload = request.FILES.get("file")
    if request.method == "POST":
        if upload is None:
            context["errors"] = [{"message": "Choose a file first."}]
            return render_page(request, "import.html", context, partial="result", status=UNPROCESSABLE)
        data = upload.read()
        context["filename"] = upload.name
        try:
            fmt = request.POST.get("format") or formats.guess_format(upload.name, data)
            formats.check_format(fmt, UPLOAD_FORMATS)
            context.update(format=fmt, unit=UNIT[fmt], format_name=formats.FORMAT_NAMES[fmt])
            if fmt in MAPPED_FORMATS:
                preview = file_preview(data, fmt)
                context["preview"] = preview
                mapping = _mapping(request, preview.columns)
                context["mapping"] = mapping
                if request.POST.get("action") == "import":
                    context["result"] = _import(request, project, data, fmt, mapping)
            else:
                parsed = formats.file_rows(project=project, user=request.user, fmt=fmt, data=data)
                context["preview"] = _rows_preview(parsed)
                if request.POST.get("action") == "import":
                    context["result"] = _import_parsed(request, project, parsed)
        except ServiceError as error:
            context["errors"] = error_list(error)
            status = UNPROCESSABLE
    return render_page(request, "import.html", context, partial="result", status=status)


def _rows_preview(parsed: formats.FileRows) -> FilePreview:
    """The first rows of a Label Studio or Parquet file as they will be imported."""
    columns = ["external_id", "text", "label", "annotations", "metadata"]
    rows = [
        [row.get("external_id"), row["text"], row.get("label", row.get("labels")),
         len(row.get("annotations", [])), row.get("metadata")]
        for row in parsed.rows[:file_services.PREVIEW_ROWS]
    ]
    return FilePreview(columns=columns, rows=[[file_services.cell(v) for v in row] for row in rows],
                       n_lines=len(parsed.rows))


def _import(request: HttpRequest, project: Any, data: bytes, fmt: str, mapping: dict[str, str]) -> dict[str, Any]:
    if mapping["text"] == NONE:
        raise InvalidInput([{"field": "text", "message": "choose the column that holds the text"}])
    columns = file_services.ColumnMap(
        text=mapping["text"],
        label=mapping["label"] or "\x00no label column",
        external_id=mapping["external_id"] or "\x00no id column",
    )
    parsed = formats.file_rows(project=project, user=request.user, fmt=fmt, data=data, columns=columns)
    parsed.rows = _rows_for_import(parsed.rows, mapping)
    return _import_parsed(request, project, parsed)


def _import_parsed(request: HttpRequest, project: Any, parsed: formats.FileRows) -> dict[str, Any]:
    result = formats.examples_import_file(
        project=project, user=request.user, parsed=parsed, default_source=request.POST.get("source") or Source.IMPORT,
        allow_history=access.role_of(request.user, project) == Role.ADMIN,
    )
    return {"created": result.created, "unchanged": result.unchanged, "updated": result.updated,
            "total": len(parsed.rows)}


@login_required
@require_GET
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.REVIEWER)
    context = {**project_context(request, project, "data"), "example_count": project.example_count,
               "labeling_config": labeling_config(project)}
    return render_page(request, "export.html", context)
