"""The models and drift pages: metrics, plots as inline SVG, promotion, alerts."""

from __future__ import annotations

from django.urls import reverse

from tests.annotator.views import factories


def test_versions_show_metrics_and_which_one_serves(project, reviewer, page_client):
    factories.model_version(project, 1, n_train=100, f1=0.71, serving=True)
    factories.model_version(project, 2, n_train=300, f1=0.84, comparison={
        "against_version": 1, "on": "production", "n": 40, "candidate_macro_f1": 0.84, "serving_macro_f1": 0.71,
        "promoted": False})

    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()

    assert "0.840 <span class=\"muted\">± 0.020</span>" in html
    assert "0.110 → <strong>0.040</strong>" in html
    assert "import: 0.820" in html and "production: 0.740" in html
    assert "vs v1 on 40 production examples" in html
    assert html.count('<svg class="chart"') == 3  # learning curve, confusion matrix, reliability
    assert "v1 in detail" in html  # the serving version is selected by default
    assert "http://" not in html.split("<svg", 1)[1].replace("http://www.w3.org/2000/svg", "")


def test_a_version_detail_loads_as_a_partial(project, reviewer, page_client, htmx):
    factories.model_version(project, 1, serving=True)
    factories.model_version(project, 2)

    response = page_client(reviewer).get(reverse("models", args=[project.id]) + "?version=2", headers=htmx)

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="version-detail"')
    assert "v2 in detail" in html


def test_promote_makes_a_version_serve(project, reviewer, page_client):
    factories.model_version(project, 1, serving=True)
    second = factories.model_version(project, 2)

    response = page_client(reviewer).post(reverse("model-promote", args=[project.id, second.id]))

    project.refresh_from_db()
    assert response.status_code == 302
    assert project.serving_version_id == second.id


def test_a_version_of_another_project_cannot_be_promoted_here(project, make_project, admin, reviewer, page_client):
    other = make_project(admin, name="Other", members={reviewer: "reviewer"})
    version = factories.model_version(other, 1)

    response = page_client(reviewer).post(reverse("model-promote", args=[project.id, version.id]))

    assert response.status_code == 404


def test_the_drift_page_plots_windows_and_lists_alerts(project, reviewer, page_client):
    version = factories.model_version(project, 1, serving=True)
    factories.drift_windows(project, 6, version=version)

    html = page_client(reviewer).get(reverse("drift", args=[project.id])).content.decode()

    assert html.count('<svg class="chart"') == 4
    assert "Predicted class mix per window" in html
    assert "predicted class mix shifted: JS 0.09 (p=0.001)" in html
    assert "routed 10 of the window&#x27;s 200 samples to the queue (reason drift)" in html
    assert "Window #4" in html


def test_the_drift_page_without_windows_explains(project, reviewer, page_client):
    html = page_client(reviewer).get(reverse("drift", args=[project.id])).content.decode()

    assert "No drift window yet" in html
    assert "No alert" in html
