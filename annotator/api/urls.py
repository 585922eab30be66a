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
