from django.urls import path

from annotator.api import views

urlpatterns = [
    path("health/", views.HealthApi.as_view(), name="api-health"),
    path("auth/token/", views.TokenCreateApi.as_view(), name="api-token"),
    path("auth/token/revoke/", views.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("users/", views.UserCreateApi.as_view(), name="api-users"),
    path("projects/", views.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.ProjectMembersApi.as_view(), name="api-project-members"),
    path("projects/<int:project_id>/examples/", views.ProjectExamplesApi.as_view(), name="api-project-examples"),
    path("projects/<int:project_id>/export/", views.ProjectExportApi.as_view(), name="api-project-export"),
    path("examples/<int:example_id>/", views.ExampleDetailApi.as_view(), name="api-example"),
    path("examples/<int:example_id>/annotations/", views.ExampleAnnotationsApi.as_view(), name="api-example-annotations"),
]

from annotator.api import loop  # noqa: E402

urlpatterns += [
    path("projects/<int:project_id>/queue/", loop.QueueStatsApi.as_view(), name="api-queue"),
    path("projects/<int:project_id>/queue/next/", loop.QueueNextApi.as_view(), name="api-queue-next"),
    path("queue/<int:item_id>/submit/", loop.QueueSubmitApi.as_view(), name="api-queue-submit"),
    path("queue/<int:item_id>/skip/", loop.QueueSkipApi.as_view(), name="api-queue-skip"),
    path("queue/<int:item_id>/heartbeat/", loop.QueueHeartbeatApi.as_view(), name="api-queue-heartbeat"),
    path("projects/<int:project_id>/train/", loop.TrainApi.as_view(), name="api-train"),
    path("projects/<int:project_id>/jobs/", loop.ProjectJobsApi.as_view(), name="api-project-jobs"),
    path("jobs/<int:job_id>/", loop.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", loop.JobCancelApi.as_view(), name="api-job-cancel"),
    path("projects/<int:project_id>/models/", loop.ProjectModelsApi.as_view(), name="api-models"),
    path("models/<int:model_id>/promote/", loop.ModelPromoteApi.as_view(), name="api-model-promote"),
    path("projects/<int:project_id>/predict/", loop.PredictApi.as_view(), name="api-predict"),
    path("projects/<int:project_id>/samples/", loop.SamplesApi.as_view(), name="api-samples"),
    path("projects/<int:project_id>/noise-report/", loop.NoiseReportApi.as_view(), name="api-noise-report"),
    path("projects/<int:project_id>/noise-report/decisions/", loop.NoiseDecisionsApi.as_view(),
         name="api-noise-decisions"),
    path("projects/<int:project_id>/drift/", loop.DriftApi.as_view(), name="api-drift"),
]

from annotator.api import health  # noqa: E402

urlpatterns += [
    path("projects/<int:project_id>/noise-report/conflicts/", health.NoiseConflictsApi.as_view(),
         name="api-noise-conflicts"),
    path("projects/<int:project_id>/noise-report/conflicts/settle/", health.NoiseConflictSettleApi.as_view(),
         name="api-noise-conflicts-settle"),
    path("projects/<int:project_id>/health/", health.ProjectHealthApi.as_view(), name="api-project-health"),
]

from annotator.api import webhooks  # noqa: E402

W = "projects/<int:project_id>/webhooks/"
urlpatterns += [
    path(W, webhooks.ProjectWebhooksApi.as_view(), name="api-webhooks"),
    path(W + "<int:webhook_id>/", webhooks.WebhookDetailApi.as_view(), name="api-webhook"),
    path(W + "<int:webhook_id>/rotate-secret/", webhooks.WebhookSecretRotateApi.as_view(),
         name="api-webhook-rotate-secret"),
    path(W + "<int:webhook_id>/test/", webhooks.WebhookTestApi.as_view(), name="api-webhook-test"),
    path(W + "<int:webhook_id>/deliveries/", webhooks.WebhookDeliveriesApi.as_view(), name="api-webhook-deliveries"),
    path(W + "<int:webhook_id>/deliveries/<int:delivery_id>/redeliver/", webhooks.WebhookRedeliverApi.as_view(),
         name="api-webhook-redeliver"),
]

from annotator.api import team  # noqa: E402

urlpatterns += [
    path("projects/<int:project_id>/team/", team.ProjectTeamApi.as_view(), name="api-project-team"),
]
