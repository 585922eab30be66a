"""REST API v1 (API.md): auth, users, projects, members, examples, annotations, export.

Each view validates input, calls one service or selector, and shapes the output.
"""

from __future__ import annotations

import tempfile
from typing import Any

from django.contrib.auth import authenticate
from django.db import connection, transaction
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from annotator.api.pagination import PAGE_PARAMETERS, Pagination, paginated
from annotator.api.parsers import OctetStreamParser, ParquetParser, SafeJSONParser
from annotator.api.serializers import (
    AnnotationIn,
    AnnotationOut,
    ErrorsOut,
    ExampleDetailOut,
    ExampleOut,
    ExampleRowIn,
    ImportOut,
    LabelStudioTaskOut,
    MemberIn,
    MemberOut,
    ProjectIn,
    ProjectOut,
    ProjectSettingsIn,
    ServiceHealthOut,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    annotation_out,
    example_out,
    project_out,
)
from annotator.errors import Forbidden, InvalidInput
from annotator.models import AnnotationKind, Role
from annotator.selectors import access, consensus, export
from annotator.selectors import examples as example_selectors
from annotator.selectors import projects as project_selectors
from annotator.services import annotations as annotation_services
from annotator.services import examples as example_services
from annotator.services import formats
from annotator.services import labels as label_services
from annotator.services import models as model_services
from annotator.services import projects as project_services
from annotator.services.broker import broker_status
from annotator.services.encoders import encoder_describe
from annotator.services.formats_hf import parquet_export
from annotator.services.formats_labelstudio import labelstudio_export

# 401 for a missing, wrong or revoked token; 404 also for a page past the last one.
ERRORS = {400: ErrorsOut, 401: ErrorsOut, 403: ErrorsOut, 404: ErrorsOut, 409: ErrorsOut, 413: ErrorsOut}
THROTTLED = {429: ErrorsOut}


def body_dict(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


class HealthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: ServiceHealthOut, 503: ServiceHealthOut}, summary="Service health (no auth)")
    def get(self, request: Request) -> Response:
        database = "ok"
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means the database is not usable
            database = "down"
        body = {"status": "ok" if database == "ok" else "degraded", "database": database, "broker": broker_status()}
        return Response(body, status=200 if database == "ok" else 503)


class TokenCreateApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=TokenIn, responses={200: TokenOut, 400: ErrorsOut, 413: ErrorsOut, **THROTTLED},
                   summary="Get an API token")
    def post(self, request: Request) -> Response:
        data = body_dict(request)
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise InvalidInput([{"field": "username", "message": "username and password are required strings"}])
        user = authenticate(request._request, username=username, password=password)
        if user is None or not user.is_active:
            raise InvalidInput([{"message": "unable to log in with these credentials"}])
        return Response({"token": project_services.token_for(user=user)})


class TokenRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None, 401: ErrorsOut}, summary="Revoke the caller's API token")
    def post(self, request: Request) -> Response:
        project_services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserCreateApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=UserIn, responses={201: UserOut, **ERRORS}, summary="Create a user (staff only)")
    def post(self, request: Request) -> Response:
        data = body_dict(request)
        user = project_services.user_create(
            username=data.get("username"), password=data.get("password"), email=data.get("email", "")
        )
        return Response({"id": user.pk, "username": user.username, "email": user.email}, status=201)


def _project_body(project, user, *, detail: bool = False) -> dict[str, Any]:  # noqa: ANN001
    role = access.role_of(user, project)
    # Annotators see the project, not who else works on it (GET members/ is reviewer-only too).
    show_members = detail and role != Role.ANNOTATOR
    return project_out(
        project,
        role=role,
        counts=project_selectors.project_counts(project),
        labels=project_selectors.project_label_classes(project),
        members=project_selectors.project_members(project) if show_members else None,
        encoder=encoder_describe(project.setting("encoder")) if detail else None,
    )


class ProjectListCreateApi(APIView):
    @extend_schema(operation_id="v1_projects_list", parameters=PAGE_PARAMETERS,
                   responses={200: paginated("PaginatedProjectList", ProjectOut(many=True)), **ERRORS},
                   summary="Projects the caller is a member of")
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        projects = access.projects_for(request.user).select_related("serving_version")
        page = paginator.paginate_queryset(projects, request, view=self)
        return paginator.get_paginated_response([_project_body(p, request.user) for p in page])

    @extend_schema(request=ProjectIn, responses={201: ProjectOut, **ERRORS}, summary="Create a project")
    def post(self, request: Request) -> Response:
        data = body_dict(request)
        project = project_services.project_create(
            user=request.user, name=data.get("name"), task=data.get("task"),
            labels=data.get("labels"), settings=data.get("settings"),
        )
        return Response(_project_body(project, request.user, detail=True), status=201)


class ProjectDetailApi(APIView):
    @extend_schema(responses={200: ProjectOut, **ERRORS}, summary="One project with counts")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id)
        return Response(_project_body(project, request.user, detail=True))

    @extend_schema(request=ProjectSettingsIn, responses={200: ProjectOut, **ERRORS},
                   summary="Change project settings and labels (admin)")
    def patch(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        data = body_dict(request)
        with transaction.atomic():  # settings and label edits: all or nothing
            if "labels" in data:
                label_services.labels_edit(project=project, edits=data["labels"])
            project_services.project_update_settings(project=project, settings=data.get("settings", {}))
        return Response(_project_body(project, request.user, detail=True))


class ProjectMembersApi(APIView):
    @extend_schema(responses={200: MemberOut(many=True), **ERRORS}, summary="Members, their roles and CROWDLAB quality")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        quality = consensus.member_quality(project)
        unknown = {"annotator_quality": None, "agreement_with_consensus": None}
        return Response([{**member, **quality.get(member["username"], unknown)}
                         for member in project_selectors.project_members(project)])

    @extend_schema(request=MemberIn, responses={201: MemberOut, **ERRORS}, summary="Add a member or set a role (admin)")
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        data = body_dict(request)
        membership = project_services.member_set(project=project, username=data.get("username"), role=data.get("role"))
        return Response({"username": membership.user.username, "role": membership.role}, status=201)

    @extend_schema(request=MemberIn, responses={204: None, **ERRORS}, summary="Remove a member (admin)")
    def delete(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.ADMIN)
        data = body_dict(request)
        project_services.member_remove(project=project, username=str(data.get("username", "")))
        return Response(status=204)


EXAMPLE_FILTERS = [
    OpenApiParameter("source", str, description="only this source (seed, import, production, ...)"),
    OpenApiParameter("labeled", bool, description="only labeled (true) or unlabeled (false) examples"),
    OpenApiParameter("label", str, description="only examples whose current label includes this one"),
    OpenApiParameter("q", str, description="case-insensitive text search"),
]


IMPORT_FORMATS = ("rows", "labelstudio", "parquet")


class IgnoreFormatParam(DefaultContentNegotiation):
    """``?format=`` names the import or export format here, not a DRF renderer."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


class ProjectExamplesApi(APIView):
    content_negotiation_class = IgnoreFormatParam
    parser_classes = [SafeJSONParser, ParquetParser, OctetStreamParser]

    @extend_schema(parameters=[*EXAMPLE_FILTERS, *PAGE_PARAMETERS],
                   responses={200: paginated("PaginatedExampleList", ExampleOut(many=True)), **ERRORS},
                   summary="List examples (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        qs = example_selectors.example_list(project, params=request.query_params)
        filtered = any(request.query_params.get(name) for name in ("source", "labeled", "label", "q"))
        paginator = Pagination.with_count(None if filtered else project.example_count)
        page = paginator.paginate_queryset(example_selectors.with_list_relations(qs), request, view=self)
        names = project_selectors.project_labels(project)
        multi = project.is_multi_label
        return paginator.get_paginated_response([example_out(e, multi=multi, label_names=names) for e in page])

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["rows", "labelstudio", "parquet"],
                                     description="rows (default: a JSON list of rows), labelstudio (a JSON list of "
                                                 "Label Studio tasks, each with data.text, and optional id, meta, "
                                                 "annotations, predictions; see docs/formats.md) or parquet (a Parquet file as the body, "
                                                 "Content-Type application/vnd.apache.parquet)")],
        request={"application/json": ExampleRowIn(many=True), "application/vnd.apache.parquet": OpenApiTypes.BINARY,
                 "application/octet-stream": OpenApiTypes.BINARY},
        responses={201: ImportOut, **ERRORS},
        summary="Bulk import up to 10,000 rows, all or nothing, idempotent on external_id (reviewer)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        allow_history = access.role_of(request.user, project) == Role.ADMIN
        fmt = formats.check_format(request.query_params.get("format", "rows"), IMPORT_FORMATS)
        if fmt == "rows":
            result = example_services.examples_import(
                project=project, user=request.user, rows=request.data, allow_history=allow_history,
            )
            return Response(result.as_dict(), status=201)
        if fmt == "labelstudio":
            parsed = formats.labelstudio_rows(project=project, user=request.user, tasks=request.data)
        else:
            if not isinstance(request.data, bytes):
                raise InvalidInput([{"field": "format", "message": "send the Parquet file itself as the body, with "
                                                                   "Content-Type application/vnd.apache.parquet"}])
            parsed = formats.file_rows(project=project, user=request.user, fmt=fmt, data=request.data,
                                       max_rows=example_services.MAX_BATCH_ROWS)
        result = formats.examples_import_file(project=project, user=request.user, parsed=parsed,
                                              allow_history=allow_history, max_rows=example_services.MAX_BATCH_ROWS)
        return Response(result.as_dict(), status=201)


class ExampleDetailApi(APIView):
    @extend_schema(responses={200: ExampleDetailOut, **ERRORS}, summary="An example with its history and scores")
    def get(self, request: Request, example_id: int) -> Response:
        example, role = access.example_for(request.user, example_id)
        example, history = example_selectors.example_detail(example, user=request.user, role=role)
        project = example.project
        multi = project.is_multi_label
        body = example_out(example, multi=multi, label_names=project_selectors.project_labels(project))
        body["annotations"] = [annotation_out(a, multi=multi) for a in history]
        return Response(body)


class ExampleAnnotationsApi(APIView):
    @extend_schema(request=AnnotationIn, responses={201: AnnotationOut, **ERRORS},
                   summary="Annotate an example (the caller is the annotator)")
    def post(self, request: Request, example_id: int) -> Response:
        example, role = access.example_for(request.user, example_id)
        if role == Role.ANNOTATOR:
            raise Forbidden("annotators label through the queue (POST /api/v1/queue/{id}/submit/)")
        data = body_dict(request)
        labels = annotation_services.labels_from_payload(example.project, data)
        kind = data.get("kind")
        if kind is not None and kind not in (AnnotationKind.LABEL, AnnotationKind.RELABEL, AnnotationKind.REVIEW):
            raise InvalidInput([{"field": "kind", "message": "kind must be label, relabel or review"}])
        annotation = annotation_services.annotation_create(
            example=example, user=request.user, labels=labels, kind=kind, note=data.get("note") or "",
        )
        model_services.maybe_retrain(project=example.project)
        return Response(annotation_out(annotation, multi=example.project.is_multi_label), status=201)


EXPORT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
                "labelstudio": "application/json", "parquet": "application/vnd.apache.parquet"}
EXPORT_SUFFIX = {"jsonl": "jsonl", "csv": "csv", "labelstudio": "labelstudio.json", "parquet": "parquet"}


class ProjectExportApi(APIView):
    content_negotiation_class = IgnoreFormatParam

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(formats.EXPORT_FORMATS),
                                     description="jsonl (default), csv, labelstudio (Label Studio JSON tasks) or "
                                                 "parquet (Hugging Face datasets, label as a ClassLabel)")],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR,
                   (200, "application/json"): LabelStudioTaskOut(many=True),
                   (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY, **ERRORS},
        summary="Every example with its labels and annotation history, streamed (reviewer)",
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse | FileResponse:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        fmt = formats.check_format(request.query_params.get("format", "jsonl"), formats.EXPORT_FORMATS)
        filename = f"project-{project.id}.{EXPORT_SUFFIX[fmt]}"
        if fmt == "parquet":
            # Parquet's footer comes last: the file is written to a temporary file a row group at a time,
            # then sent; the file is gone when the response closes it.
            file = tempfile.TemporaryFile(suffix=".parquet")  # noqa: SIM115 - FileResponse closes it
            try:
                parquet_export(project, file)
            except BaseException:
                file.close()
                raise
            file.seek(0)
            return FileResponse(file, as_attachment=True, filename=filename, content_type=EXPORT_TYPES[fmt])
        body = labelstudio_export(project) if fmt == "labelstudio" else export.export_lines(project, fmt)
        response = StreamingHttpResponse(body, content_type=EXPORT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
