"""The stopping signal on the overview and models pages."""

from __future__ import annotations

from django.urls import reverse

from tests.annotator.services.stability_rows import STOPPED, stabilized


def test_the_overview_says_when_predictions_stopped_changing(project, admin, reviewer, page_client):
    stabilized(project, admin)

    html = page_client(reviewer).get(reverse("project-overview", args=[project.id])).content.decode()

    assert "Stopping signal" in html
    assert f"<strong>{STOPPED}</strong>" in html
    assert "v4 against v3: kappa 1.000 on" in html


def test_the_overview_shows_the_kappa_while_predictions_still_change(project, admin, reviewer, page_client):
    stabilized(project, admin, n_versions=2)

    html = page_client(reviewer).get(reverse("project-overview", args=[project.id])).content.decode()

    assert "predictions still changing: kappa 1.000 with v1" in html
    assert STOPPED not in html


def test_the_overview_without_a_signal_has_no_block(project, reviewer, page_client):
    html = page_client(reviewer).get(reverse("project-overview", args=[project.id])).content.decode()

    assert "Stopping signal" not in html


def test_the_models_page_shows_the_message_and_a_kappa_line(project, admin, reviewer, page_client):
    stabilized(project, admin)

    html = page_client(reviewer).get(reverse("models", args=[project.id])).content.decode()

    assert f"<strong>{STOPPED}</strong>" in html
    assert "Stopping signal: agreement of each version" in html  # the chart's title
    assert "stopping threshold (0.99)" in html
    # three versions have a kappa (v1 has nothing to compare with): three markers on the kappa line
    assert html.count("kappa with the previous version v") == 3
    assert ">2.5</text>" not in html  # the version axis has whole-number ticks only


def test_a_stored_message_is_escaped(project, admin, reviewer, page_client):
    versions = stabilized(project, admin, n_versions=2)
    versions[-1].stability = {**versions[-1].stability, "message": "<script>alert(1)</script>"}
    versions[-1].save(update_fields=["stability"])

    for page in ("project-overview", "models"):
        html = page_client(reviewer).get(reverse(page, args=[project.id])).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
