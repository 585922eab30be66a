"""REST API v1, data health: conflicting near-duplicates (and settling a group), outliers and class health."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api.pagination import PAGE_PARAMETERS, Pagination
from annotator.api.views import ERRORS, body_dict
from annotator.models import Role
from annotator.selectors import access
from annotator.selectors import health as health_selectors
from annotator.services import health as health_services


def _names(**kwargs: object) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), **kwargs)


class ConflictMemberOut(serializers.Serializer):
    example_id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    label = serializers.CharField(allow_null=True, help_text="current label (single-label projects)")
    labels = _names(help_text="current labels")
    label_at_training = serializers.CharField(allow_null=True, help_text="the label the version saw")
    labels_at_training = _names()
    settled = serializers.BooleanField(help_text="people re-checked the current label")
    confirmations = serializers.IntegerField()


class ConflictGroupOut(serializers.Serializer):
    group = serializers.IntegerField(help_text="position in the version's list of groups, best first")
    score = serializers.FloatField(help_text="highest cosine similarity of two members with different labels "
                                             "(1.0: identical after normalisation)")
    identical = serializers.BooleanField(help_text="two members with different labels have the same normalised text")
    size = serializers.IntegerField(help_text="members found (the first 50 are listed)")
    majority_label = serializers.CharField(allow_null=True, help_text="the label most members carried at training, "
                                                                      "null when none has a majority")
    majority_labels = _names(allow_null=True)
    members = ConflictMemberOut(many=True)


class ConflictsOut(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True, help_text="cosine similarity of near-duplicates")
    n_groups_found = serializers.IntegerField(help_text="conflict groups the version found")
    truncated = serializers.BooleanField(help_text="more groups were found than the version stores (500)")
    count = serializers.IntegerField(help_text="open groups")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ConflictGroupOut(many=True)


class ConflictSettleOut(serializers.Serializer):
    settled = serializers.IntegerField()
    changed = serializers.IntegerField(help_text="members whose label changed")
    example_ids = serializers.ListField(child=serializers.IntegerField())
    label = serializers.CharField(allow_null=True)
    labels = _names()


class OutlierOut(serializers.Serializer):
    example_id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    label = serializers.CharField(allow_null=True)
    labels = _names()
    score = serializers.FloatField(help_text="0..1, low = far from every class (Datalab's outlier score)")
    average_distance = serializers.FloatField(help_text="mean cosine distance to the k nearest labeled examples")
    is_outlier = serializers.BooleanField()
    predicted = serializers.CharField(allow_null=True, help_text="the class the out-of-sample model leans to")
    confidence = serializers.FloatField(allow_null=True)


class ClassHealthOut(serializers.Serializer):
    label = serializers.CharField()
    n = serializers.IntegerField(help_text="labeled examples in the version's snapshot")
    share = serializers.FloatField()
    too_small = serializers.BooleanField()
    reasons = _names()


class HealthOut(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True)
    method = serializers.CharField(allow_null=True, help_text="datalab, or cleanlab-rules (the same rules without "
                                                              "the optional datasets package)")
    classes = ClassHealthOut(many=True)
    class_imbalance = inline_serializer("ClassImbalanceOut", {
        "rarest": serializers.CharField(), "n": serializers.IntegerField(), "share": serializers.FloatField(),
        "threshold_share": serializers.FloatField(), "flagged": serializers.BooleanField()}, allow_null=True)
    too_small = _names()
    outliers = inline_serializer("OutlierSummaryOut", {
        "n_flagged": serializers.IntegerField(), "k": serializers.IntegerField(), "metric": serializers.CharField(),
        "issue_threshold": serializers.FloatField(allow_null=True), "reference": serializers.IntegerField(),
        "examples": inline_serializer("PaginatedOutlierList", {
            "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True), "results": OutlierOut(many=True)}),
    }, allow_null=True)


class NoiseConflictsApi(APIView):
    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: ConflictsOut, **ERRORS},
                   summary="Near-duplicate texts with different labels, by group, best first (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        header, groups = health_selectors.conflict_report(project)
        paginator = Pagination()
        page = paginator.paginate_queryset(groups, request, view=self)
        data = paginator.get_paginated_response(health_selectors.conflict_groups_with_texts(project, list(page))).data
        return Response({**header, **data})


class NoiseConflictSettleApi(APIView):
    @extend_schema(
        request=inline_serializer("ConflictSettleIn", {
            "example_ids": serializers.ListField(child=serializers.IntegerField()),
            "label": serializers.CharField(required=False, help_text="single-label projects"),
            "labels": _names(required=False, help_text="multi-label projects")}),
        responses={200: ConflictSettleOut, **ERRORS},
        summary="Settle a conflict group: every member gets one label as a review decision, all or nothing (reviewer)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        data = body_dict(request)
        field = "labels" if "labels" in data and "label" not in data else "label"
        result = health_services.conflict_group_settle(project=project, user=request.user,
                                                       example_ids=data.get("example_ids"), label=data.get(field),
                                                       field=field)
        return Response(result)


class ProjectHealthApi(APIView):
    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: HealthOut, **ERRORS},
                   summary="Class health and outliers (texts that belong to no class), worst first (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        header, rows = health_selectors.health_report(project)
        paginator = Pagination()
        # Paged even when there is nothing yet, so a bad page or page_size is a 400 either way.
        page = paginator.paginate_queryset(rows if header["outliers"] is not None else [], request, view=self)
        if header["outliers"] is not None:
            header["outliers"] = {**header["outliers"], "examples": paginator.get_paginated_response(
                health_selectors.outlier_rows_with_texts(project, list(page))).data}
        return Response(header)
