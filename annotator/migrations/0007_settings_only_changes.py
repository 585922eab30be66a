"""Project rows keep only the settings their admins changed (annotator/project_settings.py holds every default):
strip stored values equal to the defaults of the time, so that a later change of a default reaches those
projects too. Reversing keeps the rows as they are (a row without a value reads the default either way)."""

from django.db import migrations

# The defaults as they were when this migration was written (a migration never reads the live definition,
# whose defaults may change later).
DEFAULTS = {
    "max_text_chars": 20_000,
    "lease_seconds": 600,
    "drift_window_size": 200,
    "drift_reference": "pool",
    "overlap": 1,
    "retrain_after_labels": 0,
    "show_suggestions": True,
    "queue_size": 500,
    "queue_mix": {"uncertain": 0.6, "suspect": 0.25, "drift": 0.1, "random": 0.05},
    "query_strategy": "entropy",
    "diversity": True,
    "train_mode": "auto",
    "promotion": "auto",
    "max_length": 256,
    "guidelines": "",
}


def strip_defaults(apps, schema_editor):  # noqa: ANN001, ANN201
    Project = apps.get_model("annotator", "Project")
    for project in Project.objects.only("id", "settings").iterator():
        stored = project.settings or {}
        kept = {name: value for name, value in stored.items()
                if name not in DEFAULTS or value != DEFAULTS[name]
                or type(value) is not type(DEFAULTS[name])}
        if kept != stored:
            Project.objects.filter(pk=project.pk).update(settings=kept)


class Migration(migrations.Migration):
    dependencies = [("annotator", "0006_loop_converges")]

    operations = [migrations.RunPython(strip_defaults, migrations.RunPython.noop, elidable=True)]
