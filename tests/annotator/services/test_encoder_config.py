"""services.training._encoder_config: a train job builds its encoder from the project's settings and the
operator's list, or fails with what to change."""

from __future__ import annotations

import pytest

from annotator.models import Project
from annotator.services.projects import project_update_settings
from annotator.services.snapshot import TrainingInputError
from annotator.services.training import _encoder_config

pytestmark = pytest.mark.django_db


def test_the_projects_encoder_pooling_and_length(project, tiny_encoders):
    project_update_settings(project=project, settings={"encoder": "tiny", "pooling": "cls", "max_length": 48})

    config = _encoder_config(Project.objects.get(pk=project.pk))

    assert (config.model_dir, config.pooling, config.max_length) == (tiny_encoders["tiny"], "cls", 48)


def test_the_default_is_the_bundled_minilm(project, settings):
    config = _encoder_config(project)

    assert (config.model_dir, config.pooling, config.max_length) == (settings.ENCODERS["minilm"], "mean", 256)


def test_an_encoder_no_longer_listed_stops_the_job_with_what_to_do(project, tiny_encoders, settings):
    project_update_settings(project=project, settings={"encoder": "tiny", "max_length": 32})
    settings.ENCODERS = {"minilm": settings.ENCODERS["minilm"]}

    with pytest.raises(TrainingInputError, match="unknown encoder 'tiny'.*change it in the project's settings"):
        _encoder_config(Project.objects.get(pk=project.pk))


def test_a_max_length_saved_before_the_check_existed_stops_the_job(project, tiny_encoders):
    # Given a row written before max_length was checked against the encoder's positions
    Project.objects.filter(pk=project.pk).update(settings={"encoder": "tiny", "max_length": 100})

    with pytest.raises(TrainingInputError, match="max_length 100 is more than encoder 'tiny' accepts"):
        _encoder_config(Project.objects.get(pk=project.pk))
