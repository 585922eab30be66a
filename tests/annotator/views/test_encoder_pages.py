"""The encoder on the pages (issue 16, part 1): the settings form picks it from the operator's list and shows its
figures; the models page names each version's encoder and fingerprint."""

from __future__ import annotations

from django.urls import reverse

from annotator.models import ModelVersion, Project
from tests.annotator.views import factories
from tests.annotator.views.test_overview import _settings_form

FINGERPRINT = "ab" * 32


def test_the_settings_form_lists_the_operators_encoders_with_the_saved_ones_figures(project, admin, page_client,
                                                                                    tiny_encoders):
    html = page_client(admin).get(reverse("project-overview", args=[project.id])).content.decode()

    assert '<option value="minilm" selected>minilm</option>' in html
    assert '<option value="tiny">tiny</option>' in html
    assert "hidden size 384, 22,713,216 parameters, 6 layers, at most 512 tokens (512 positions)" in html
    assert tiny_encoders["tiny"] not in html, "the operator's paths stay private"
    assert '<option value="cls">cls</option>' in html


def test_the_admin_switches_the_encoder_and_pooling_from_the_form(project, admin, page_client, htmx, tiny_encoders):
    form = _settings_form(project, encoder="tiny", pooling="cls", max_length="32")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    assert response.status_code == 200, response.content.decode()[:500]
    project.refresh_from_db()
    assert (project.setting("encoder"), project.setting("pooling"), project.setting("max_length")) == ("tiny", "cls", 32)
    assert "hidden size 32, 21,760 parameters, 2 layers, at most 64 tokens (64 positions)" in response.content.decode()


def test_a_broken_encoder_is_named_on_the_form_and_nothing_is_saved(project, admin, page_client, htmx, tiny_encoders):
    form = _settings_form(project, encoder="no-tokenizer", max_length="32", guidelines="changed")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    html = response.content.decode()
    assert response.status_code == 422
    assert "encoder &#x27;no-tokenizer&#x27; cannot be used: no tokenizer files" in html
    assert 'aria-invalid="true"' in html
    project.refresh_from_db()
    assert project.settings == {}


def test_a_forged_encoder_name_is_refused_and_escaped(project, admin, page_client, htmx):
    form = _settings_form(project, encoder="<script>alert(1)</script>")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    html = response.content.decode()
    assert response.status_code == 422
    assert "must be one of the encoders the operator lists: minilm" in html
    assert "<script>alert(1)</script>" not in html
    assert Project.objects.get(pk=project.pk).settings == {}


def test_max_length_above_the_encoders_positions_is_marked_on_its_field(project, admin, page_client, htmx,
                                                                        tiny_encoders):
    form = _settings_form(project, encoder="tiny", max_length="100")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    assert response.status_code == 422
    assert "max_length 100 is more than encoder &#x27;tiny&#x27; accepts: at most 64 tokens" in response.content.decode()
    assert Project.objects.get(pk=project.pk).settings == {}


def test_the_models_page_names_each_versions_encoder_and_fingerprint(project, reviewer, page_client):
    version = factories.model_version(project, 1, serving=True)
    ModelVersion.objects.filter(pk=version.pk).update(config={"encoder": {
        "name": "tiny", "fingerprint": FINGERPRINT, "model_type": "bert", "hidden_size": 32, "parameters": 21760,
        "pooling": "cls", "max_length": 32, "model_dir": "/srv/models/tiny"}})

    page = reverse("models", args=[project.id])
    listing = page_client(reviewer).get(page).content.decode()
    detail = page_client(reviewer).get(page, {"version": 1}).content.decode()

    assert f"tiny <code title=\"encoder fingerprint: base weights plus preprocessing\">{FINGERPRINT[:8]}</code>" in listing
    assert "encoder <strong>tiny</strong> (bert, hidden size 32, 21,760 parameters), cls pooling, 32 tokens" in detail
    assert FINGERPRINT[:12] in detail
    assert "/srv/models/tiny" not in listing + detail
