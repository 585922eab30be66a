from django.contrib.auth import views as auth_views
from django.urls import path

from annotator.views import annotate, data, drift, metrics, models_page, pages, review

P = "projects/<int:project_id>/"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", pages.project_list, name="project-list"),
    path(P, pages.overview, name="project-overview"),
    path(P + "train/", pages.train, name="train"),
    path(P + "settings/", pages.settings_update, name="project-settings"),
    path(P + "jobs/<int:job_id>/", pages.job_status, name="job-status"),
    path(P + "jobs/<int:job_id>/cancel/", pages.job_cancel, name="job-cancel"),
    path(P + "annotate/", annotate.annotate, name="annotate"),
    path(P + "annotate/<int:item_id>/submit/", annotate.submit, name="annotate-submit"),
    path(P + "annotate/<int:item_id>/skip/", annotate.skip, name="annotate-skip"),
    path(P + "annotate/answers/<int:annotation_id>/correct/", annotate.correct, name="annotate-correct"),
    path(P + "review/", review.review, name="review"),
    path(P + "review/decisions/", review.decisions, name="review-decisions"),
    path(P + "review/agreement/", review.agreement, name="agreement"),
    path(P + "models/", models_page.models, name="models"),
    path(P + "models/<int:model_id>/promote/", models_page.promote, name="model-promote"),
    path(P + "drift/", drift.drift, name="drift"),
    path(P + "import/", data.import_page, name="import"),
    path(P + "export/", data.export_page, name="export"),
]

urlpatterns += [
    path(P + "review/conflicts/", review.conflicts, name="review-conflicts"),
    path(P + "review/conflicts/settle/", review.conflicts_settle, name="review-conflicts-settle"),
    path(P + "review/health/", review.data_health, name="review-health"),
]

from annotator.views import webhooks  # noqa: E402

urlpatterns += [
    path(P + "webhooks/", webhooks.webhooks, name="webhooks"),
    path(P + "webhooks/<int:webhook_id>/update/", webhooks.webhook_update, name="webhook-update"),
    path(P + "webhooks/<int:webhook_id>/delete/", webhooks.webhook_delete, name="webhook-delete"),
    path(P + "webhooks/<int:webhook_id>/test/", webhooks.webhook_test, name="webhook-test"),
    path(P + "webhooks/<int:webhook_id>/rotate-secret/", webhooks.webhook_rotate_secret, name="webhook-rotate-secret"),
    path(P + "webhooks/deliveries/<int:delivery_id>/redeliver/", webhooks.webhook_redeliver,
         name="webhook-redeliver"),
]

from annotator.views import people, team  # noqa: E402

urlpatterns += [
    path(P + "team/", team.team, name="team"),
    path("projects/new/", people.project_create, name="project-create"),
    path("users/new/", people.user_create, name="user-create"),
    path(P + "labels/", people.labels, name="labels"),
    path(P + "labels/<int:label_id>/", people.label_update, name="label-update"),
    path(P + "members/", people.members, name="members"),
    path(P + "members/<int:user_id>/role/", people.member_role, name="member-role"),
    path(P + "members/<int:user_id>/remove/", people.member_remove, name="member-remove"),
]
