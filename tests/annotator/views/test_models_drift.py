"""The models and drift pages: metrics, plots as inline SVG, promotion, alerts."""

from __future__ import annotations

from django.urls import reverse

from tests.annotator.views import factories


def test_versions_show_holdout_metrics_with_intervals_and_which_one_serves(project, reviewer, page_client):
    factories.model_version(project, 1, n_train=100, f1=0.71, serving=True)
    factories.model_version(project, 2, n_train=300, f1=0.84, comparison={
        "decision": "rejected", "policy": "auto", "evidence": {
            "against_version": 1, "on": "holdout", "n": 40, "candidate_macro_f1": 0.62, "serving_macro_f1": 0.71,
            "difference": -0.09, "difference_ci": [-0.15, -0.04], "margin": 0.01, "shown_worse": True}})

    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()

    assert "0.840 [0.780–0.890] <span class=\"muted\">± 0.020</span>" in html
    assert "0.110 [0.080–0.150] → <strong>0.040 [0.020–0.070]</strong>" in html
    assert "40 held out" in html and "import: 32, random: 8" in html
    assert "import: 0.820 [0.740–0.880]" in html and "production: <span class=\"muted\">too few held-out" in html
    assert ">rejected</span>" in html
    assert "vs v1 on 40 held-out labels: macro-F1 0.620 vs 0.710, difference -0.090 [-0.150, -0.040] with margin " \
           "0.01: shown worse" in html
    assert "Promote anyway" in html
    assert html.count('<svg class="chart"') == 3  # learning curve, confusion matrix, reliability
    assert "v1 in detail" in html  # the serving version is selected by default
    assert "Confusion matrix of v1 (holdout)" in html
    assert "0.790 [0.700–0.870]" in html  # per-class F1 with its interval
    assert "http://" not in html.split("<svg", 1)[1].replace("http://www.w3.org/2000/svg", "")


def test_too_small_a_holdout_says_so_instead_of_a_number(project, reviewer, page_client):
    reason = "too few held-out labels to measure: 4 held out, at least 30 needed"
    holdout = {"n": 4, "reason": reason, "sources": {"import": 4}, "rule": factories.holdout_rule()}
    factories.model_version(project, 1, serving=True, metrics={"macro_f1": None, "ece": None, "ece_before": None,
                                                               "n_train": 12, "holdout": holdout})

    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()

    assert html.count(reason) == 2  # the versions table and the detail
    assert "0.000" not in html and "1.000" not in html
    assert "Confusion matrix" not in html


def test_an_earlier_version_can_be_rolled_back_to(project, reviewer, page_client):
    first = factories.model_version(project, 1)
    factories.model_version(project, 2, serving=True)

    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()
    assert "Roll back to v1" in html

    page_client(reviewer).post(reverse("model-promote", args=[project.id, first.id]))

    project.refresh_from_db()
    first.refresh_from_db()
    assert project.serving_version_id == first.id
    assert first.comparison["history"][-1]["rollback"] is True
    assert first.comparison["history"][-1]["replaced_version"] == 2
    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()
    assert "promoted by rita (rolled back from v2)" in html


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
