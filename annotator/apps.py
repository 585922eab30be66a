from django.apps import AppConfig


class AnnotatorConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotator"
    verbose_name = "Annotator"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from annotator.db import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="annotator-sqlite-functions")
