"""REST API v1, the loop: queue, jobs, training, models, predictions, production samples, noise, drift."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from annotator.api.loop_serializers import (
    DriftWindowOut,
    ModelVersionOut,
    NoiseDecisionsOut,
    NoiseIssueOut,
    NoiseReportOut,
    PredictOut,
    QueueHeartbeatOut,
    QueueItemOut,
    QueueSkipOut,
    QueueStatsOut,
    SamplesOut,
    TrainConflictOut,
    TrainOut,
)
from annotator.api.pagination import PAGE_PARAMETERS, Pagination, paginated
from annotator.api.serializers import AnnotationIn, AnnotationOut, ErrorsOut, JobOut, annotation_out, job_out
from annotator.api.views import ERRORS, THROTTLED, body_dict
from annotator.errors import Conflict, InvalidInput
from annotator.models import Role
from annotator.selectors import access, drift, jobs, noise
from annotator.selectors import models as model_selectors
from annotator.selectors import queue as queue_selectors
from annotator.services import jobs as job_services
from annotator.services import models as model_services
from annotator.services import noise as noise_services
from annotator.services import production as production_services
from annotator.services import queue as queue_services
from training.modes import MODES

# The serving version's files are missing, changed, or lead outside ARTIFACT_DIR.
UNUSABLE_MODEL = {503: ErrorsOut}


# --- queue ----------------------------------------------------------------------------------------------
class QueueStatsApi(APIView):
    @extend_schema(responses={200: QueueStatsOut, **ERRORS}, summary="Queue counts by status and reason")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id)
        return Response(queue_selectors.queue_stats(project))


class QueueNextApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("n", int, description="how many items to lease (1-100, default 10)")],
        responses={200: QueueItemOut(many=True), **ERRORS},
        summary="Lease up to n items to the caller",
    )
    def get(self, request: Request, project_id: int) -> Response:
        try:
            n = int(request.query_params.get("n", "10"))
        except ValueError:
            n = None  # a 400 from the service, after the membership check
        project, items = queue_services.queue_next(user=request.user, project_id=project_id, n=n)
        return Response(queue_selectors.queue_items_shown(project, items))


class QueueSubmitApi(APIView):
    @extend_schema(request=AnnotationIn, responses={201: AnnotationOut, **ERRORS},
                   summary="Answer a leased item (409 when the lease was lost)")
    def post(self, request: Request, item_id: int) -> Response:
        annotation = queue_services.queue_submit(user=request.user, item_id=item_id, data=body_dict(request))
        project = annotation.example.project
        model_services.maybe_retrain(project=project)
        return Response(annotation_out(annotation, multi=project.is_multi_label), status=201)


class QueueSkipApi(APIView):
    @extend_schema(request=None, responses={200: QueueSkipOut, **ERRORS}, summary="Release a leased item")
    def post(self, request: Request, item_id: int) -> Response:
        item = queue_services.queue_skip(user=request.user, item_id=item_id)
        return Response({"id": item.id, "status": item.status})


class QueueHeartbeatApi(APIView):
    @extend_schema(request=None, responses={200: QueueHeartbeatOut, **ERRORS}, summary="Renew a lease")
    def post(self, request: Request, item_id: int) -> Response:
        item = queue_services.queue_heartbeat(user=request.user, item_id=item_id)
        return Response({"id": item.id, "lease_expires_at": item.lease_expires_at})


# --- jobs and training -------------------------------------------------------------------------------------
class TrainApi(APIView):
    @extend_schema(
        request=inline_serializer("TrainIn", {
            "mode": serializers.ChoiceField(choices=list(MODES), required=False),
            "seeds": serializers.IntegerField(required=False, min_value=1, max_value=5),
        }),
        responses={202: TrainOut, **ERRORS, 409: TrainConflictOut},
        summary="Retrain (reviewer); 409 naming the running job if one is queued or running",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        data = request.data if isinstance(request.data, dict) else {}
        if request.data and not isinstance(request.data, dict):
            raise InvalidInput("the body must be a JSON object")
        try:
            job = model_services.training_start(project=project, user=request.user, mode=data.get("mode"),
                                                seeds=data.get("seeds"))
        except Conflict as conflict:
            running = jobs.job_by_id(conflict.extra["job_id"])
            return Response({"errors": conflict.errors, "job": job_out(running)}, status=409)
        return Response({"job": job_out(job)}, status=202)


class JobDetailApi(APIView):
    @extend_schema(responses={200: JobOut, **ERRORS}, summary="A job's status, progress, stage, message and result")
    def get(self, request: Request, job_id: int) -> Response:
        return Response(job_out(jobs.job_for(request.user, job_id)))


class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: JobOut, **ERRORS}, summary="Cancel a queued or running job (reviewer)")
    def post(self, request: Request, job_id: int) -> Response:
        job = jobs.job_for(request.user, job_id, role=Role.REVIEWER)
        return Response(job_out(job_services.job_cancel(job=job)))


class ProjectJobsApi(APIView):
    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: paginated("PaginatedJobList", JobOut(many=True)), **ERRORS},
                   summary="The project's jobs, newest first")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id)
        paginator = Pagination()
        page = paginator.paginate_queryset(jobs.project_jobs(project), request, view=self)
        return paginator.get_paginated_response([job_out(j) for j in page])


# --- models and predictions ------------------------------------------------------------------------------
class ProjectModelsApi(APIView):
    @extend_schema(parameters=PAGE_PARAMETERS,
                   responses={200: paginated("PaginatedModelVersionList", ModelVersionOut(many=True)), **ERRORS},
                   summary="Model versions with holdout metrics and promotion decisions (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        paginator = Pagination()
        page = paginator.paginate_queryset(model_selectors.project_model_versions(project), request, view=self)
        context = {"project": project, "running_jobs": jobs.running_job_ids(project)}
        return paginator.get_paginated_response(ModelVersionOut(page, many=True, context=context).data)


class ModelPromoteApi(APIView):
    @extend_schema(request=None, responses={200: ModelVersionOut, **ERRORS},
                   summary="Make this version the serving one (reviewer): promote a candidate or roll back")
    def post(self, request: Request, model_id: int) -> Response:
        version = model_selectors.model_version_for(request.user, model_id, role=Role.REVIEWER)
        version = model_services.model_promote(version=version, reason=f"promoted by {request.user.username}")
        return Response(ModelVersionOut(version).data)


class PredictApi(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "push"

    @extend_schema(
        request=inline_serializer("PredictIn", {"texts": serializers.ListField(child=serializers.CharField())}),
        responses={200: PredictOut, **ERRORS, **THROTTLED, **UNUSABLE_MODEL},
        summary="Predict with the serving version (409 when none is promoted)",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id)
        texts = body_dict(request).get("texts")
        version, predictions = production_services.predict_texts(project=project, texts=texts)
        return Response({"model_version": version.number, "predictions": predictions})


class SamplesApi(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "push"

    @extend_schema(
        request=inline_serializer("SampleIn", {
            "text": serializers.CharField(), "external_id": serializers.CharField(required=False, allow_null=True),
            "metadata": serializers.DictField(required=False, allow_null=True),
            "observed_at": serializers.DateTimeField(required=False, allow_null=True)}, many=True),
        responses={201: SamplesOut, **ERRORS, **THROTTLED, **UNUSABLE_MODEL},
        summary="Push production samples (reviewer); answers predictions or null when no model is promoted",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        result = production_services.samples_push(project=project, user=request.user, rows=request.data)
        return Response(result, status=201)


# --- noise and drift -----------------------------------------------------------------------------------
class NoiseReportApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("label", str, description="only issues whose given label is this one"),
                    OpenApiParameter("settled", bool, description="the flags people already settled instead of "
                                                                  "the open ones"),
                    *PAGE_PARAMETERS],
        responses={200: NoiseReportOut, **ERRORS},
        summary="Suspected label errors, ascending label quality (reviewer)",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        settled = request.query_params.get("settled", "false").lower()
        if settled not in ("true", "false", "1", "0"):
            raise InvalidInput([{"field": "settled", "message": "settled must be true or false"}])
        report, issues = noise.noise_report(project, label=request.query_params.get("label"),
                                            settled=settled in ("true", "1"))
        paginator = Pagination()
        page = paginator.paginate_queryset(issues, request, view=self)
        rows = NoiseIssueOut(noise.noise_issue_rows(project, page), many=True,
                             context={"multi": project.is_multi_label}).data
        report["issues"] = paginator.get_paginated_response(rows).data
        return Response(report)


class NoiseDecisionsApi(APIView):
    @extend_schema(
        request=inline_serializer("NoiseDecisionIn", {
            "example_id": serializers.IntegerField(),
            "action": serializers.ChoiceField(choices=["keep", "relabel", "send_to_queue"]),
            "label": serializers.CharField(required=False),
            "labels": serializers.ListField(child=serializers.CharField(), required=False),
            "note": serializers.CharField(required=False)}, many=True),
        responses={200: NoiseDecisionsOut, **ERRORS},
        summary="Keep, relabel or send suspects to the queue (reviewer), all or nothing",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        result = noise_services.noise_decisions_apply(project=project, user=request.user, rows=request.data)
        return Response(result)


class DriftApi(APIView):
    @extend_schema(parameters=PAGE_PARAMETERS,
                   responses={200: paginated("PaginatedDriftWindowList", DriftWindowOut(many=True)), **ERRORS},
                   summary="Drift windows of production samples, newest first (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        paginator = Pagination()
        page = paginator.paginate_queryset(drift.project_drift_windows(project), request, view=self)
        return paginator.get_paginated_response(DriftWindowOut(page, many=True).data)
