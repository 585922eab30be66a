"""annotator/project_settings.py: one definition of every project setting, rows storing only changes."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
from django.apps import apps

from annotator import project_settings
from annotator.models import Project
from annotator.services.projects import project_create, project_update_settings

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_setting_is_documented_in_the_api_doc_as_the_definition_writes_it():
    doc = API_DOC.read_text()

    missing = [s.name for s in project_settings.SETTINGS if f"| `{s.name}` |" not in doc]

    assert not missing, f"docs/api.md does not document {missing}"
    assert project_settings.documentation_table() in doc, (
        "docs/api.md's settings table differs from annotator/project_settings.py; paste this one:\n"
        + project_settings.documentation_table())


@pytest.mark.django_db
def test_a_new_project_stores_only_what_was_changed(admin):
    project = project_create(user=admin, name="p", task="single_label", labels=["a", "b"],
                             settings={"lease_seconds": 120, "overlap": 1})

    project.refresh_from_db()
    assert project.settings == {"lease_seconds": 120}
    assert project.setting("lease_seconds") == 120 and project.setting("overlap") == 1


@pytest.mark.django_db
def test_setting_a_value_back_to_its_default_follows_the_default_again(admin):
    project = project_create(user=admin, name="p", task="single_label", labels=["a", "b"],
                             settings={"lease_seconds": 120})

    project_update_settings(project=project, settings={"lease_seconds": 600, "queue_size": 50})

    project.refresh_from_db()
    assert project.settings == {"queue_size": 50}


@pytest.mark.django_db
def test_a_changed_default_reaches_existing_projects(admin, monkeypatch):
    project = project_create(user=admin, name="p", task="single_label", labels=["a", "b"])
    lease = project_settings.BY_NAME["lease_seconds"]

    monkeypatch.setitem(project_settings.BY_NAME, "lease_seconds", dataclasses.replace(lease, default=900))

    assert Project.objects.get(pk=project.pk).setting("lease_seconds") == 900


def test_defaults_are_copies_a_caller_may_change():
    project = Project(settings={})

    project.setting("queue_mix")["uncertain"] = 0.0

    assert project.setting("queue_mix")["uncertain"] == 0.6


@pytest.mark.django_db
def test_the_migration_strips_stored_defaults_and_keeps_changes(admin):
    migration = importlib.import_module("annotator.migrations.0007_settings_only_changes")
    full = {**migration.DEFAULTS, "lease_seconds": 120, "retired_setting": 3}
    project = Project.objects.create(name="old", task="single_label", settings=full, created_by=admin)

    migration.strip_defaults(apps, None)

    project.refresh_from_db()
    assert project.settings == {"lease_seconds": 120, "retired_setting": 3}
    assert project.setting("overlap") == 1


def test_the_migration_froze_the_defaults_of_its_time():
    migration = importlib.import_module("annotator.migrations.0007_settings_only_changes")

    assert set(migration.DEFAULTS) <= set(project_settings.BY_NAME)


def test_the_pooling_choices_are_the_encoders():
    from training.encoder import POOLINGS

    assert project_settings.POOLINGS == POOLINGS


def test_the_default_encoder_is_always_listed(settings):
    assert project_settings.default("encoder") == settings.DEFAULT_ENCODER
    assert project_settings.default("encoder") in settings.ENCODERS
