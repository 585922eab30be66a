"""The overview: counts, serving model, jobs with live progress, training and settings."""

from __future__ import annotations

from django.urls import reverse

from annotator.models import Job, Project
from tests.annotator.views import factories


def test_the_overview_shows_counts_and_the_serving_model(project, admin, reviewer, page_client):
    factories.import_examples(project, admin, ["one", "two", "three"], labels=["positive", None, None])
    factories.model_version(project, 1, serving=True)

    html = page_client(reviewer).get(reverse("project-overview", args=[project.id])).content.decode()

    assert '<span class="stat-value">3</span><span class="stat-label">examples</span>' in html
    assert '<span class="stat-value">1</span><span class="stat-label">labeled</span>' in html
    assert '<span class="stat-value">v1</span>' in html


def test_a_running_job_polls_every_two_seconds(project, reviewer, page_client, htmx):
    job = factories.job(project, progress=0.42)

    response = page_client(reviewer).get(reverse("job-status", args=[project.id, job.id]), headers=htmx)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html
    assert 'aria-valuenow="42"' in html
    assert "<html" not in html


def test_polling_stops_with_286_once_the_job_ended(project, reviewer, page_client, htmx):
    job = factories.job(project, status=Job.Status.SUCCEEDED, progress=1.0)

    response = page_client(reviewer).get(reverse("job-status", args=[project.id, job.id]), headers=htmx)

    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()
    assert "Succeeded" in response.content.decode()


def test_a_job_link_without_htmx_opens_the_job_page(project, annotator, page_client):
    job = factories.job(project)

    response = page_client(annotator).get(reverse("job-status", args=[project.id, job.id]))

    assert response.status_code == 200
    assert "<html" in response.content.decode()


def test_a_job_of_another_project_is_404(project, make_project, admin, reviewer, page_client):
    other = make_project(admin, name="Other")
    job = factories.job(other)

    response = page_client(reviewer).get(reverse("job-status", args=[project.id, job.id]))

    assert response.status_code == 404


def test_the_train_button_queues_a_training_job(project, reviewer, page_client, htmx):
    response = page_client(reviewer).post(reverse("train", args=[project.id]), {"mode": "frozen", "seeds": "2"},
                                          headers=htmx)

    job = Job.objects.get(project=project, kind=Job.Kind.TRAIN)
    assert job.params["mode"] == "frozen" and job.params["seeds"] == 2
    assert response.status_code == 200
    assert f'id="job-{job.id}"' in response.content.decode()


def test_a_second_train_click_names_the_running_job(project, reviewer, page_client, htmx):
    running = factories.job(project, status=Job.Status.RUNNING)

    response = page_client(reviewer).post(reverse("train", args=[project.id]), {"mode": "auto"}, headers=htmx)

    assert Job.objects.filter(project=project, kind=Job.Kind.TRAIN).count() == 1
    assert f"job {running.id}" in response.content.decode()


def test_an_unknown_training_mode_is_refused(project, reviewer, page_client, htmx):
    response = page_client(reviewer).post(reverse("train", args=[project.id]), {"mode": "turbo"}, headers=htmx)

    assert response.status_code == 422
    assert not Job.objects.filter(project=project).exists()


def test_the_admin_saves_settings(project, admin, page_client, htmx):
    form = _settings_form(project, show_suggestions=False, guidelines="Sarcasm counts as negative.")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    project.refresh_from_db()
    assert response.status_code == 200
    assert project.setting("show_suggestions") is False
    assert project.setting("guidelines") == "Sarcasm counts as negative."


def test_bad_settings_are_named_and_nothing_is_saved(project, admin, page_client, htmx):
    form = _settings_form(project, overlap="0", guidelines="changed")

    response = page_client(admin).post(reverse("project-settings", args=[project.id]), form, headers=htmx)

    project.refresh_from_db()
    assert response.status_code == 422
    assert "must be an integer from 1 to 10" in response.content.decode()
    assert project.setting("guidelines") == ""


def test_a_reviewer_cannot_change_settings(project, reviewer, page_client):
    response = page_client(reviewer).post(reverse("project-settings", args=[project.id]), _settings_form(project))

    assert response.status_code == 404


def _settings_form(project: Project, **changes) -> dict:
    form = {name: project.setting(name) for name in (
        "overlap", "lease_seconds", "retrain_after_labels", "queue_size", "drift_window_size", "max_text_chars",
        "max_length", "webhook_queue_low", "guidelines", "train_mode")}
    form.update({f"mix_{k}": v for k, v in project.setting("queue_mix").items()})
    form["show_suggestions"] = "on"
    for key, value in changes.items():
        if key == "show_suggestions" and value is False:
            form.pop("show_suggestions")
        else:
            form[key] = value
    return form
