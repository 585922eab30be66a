from django.contrib import admin

from annotator.models import Annotation, Example, Job, Membership, ModelVersion, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "task", "created_at"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "external_id", "source", "label_source"]
    list_filter = ["source"]
    search_fields = ["external_id"]
    raw_id_fields = ["latest_score"]

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ARG002 - project counts stay exact
        return False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "example", "user", "kind", "labels", "created_at"]
    raw_id_fields = ["example", "queue_item"]

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ARG002 - append-only
        return False

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ARG002
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "number", "status", "mode", "n_train", "created_at"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "progress", "stage", "created_at"]
