"""The drift page and GET drift/ say which reference each window was compared with."""

from __future__ import annotations

from django.urls import reverse

from annotator.models import DriftWindow
from tests.annotator.views import factories

POOL = {"kind": "pool", "model_version": 1, "setting": "pool", "n_pool": 1200, "n_labeled": 300,
        "summary": "the unlabeled pool scored by v1 (1,200 examples, 1,200 sampled) and the 300 labeled examples "
                   "(20% of the data; their validation split stands for them)"}
LABELED = {"kind": "labeled_split", "model_version": 1, "setting": "pool", "n": 45,
           "summary": "the labeled validation split of v1 (45 examples)",
           "fallback": "no scored pool for v1 (no unlabeled examples outside production)"}


def _windows(project, version):
    windows = factories.drift_windows(project, 6, version=version)  # window 4 alerts
    for window in windows:
        window.details = {"reference": LABELED if window.sequence < 2 else POOL}
    DriftWindow.objects.bulk_update(windows, ["details"])
    return windows


def test_the_drift_page_shows_which_reference_each_window_was_compared_with(project, reviewer, page_client):
    version = factories.model_version(project, 1, serving=True)
    _windows(project, version)

    html = page_client(reviewer).get(reverse("drift", args=[project.id])).content.decode()

    # the runs of windows and their references
    assert "Compared with" in html
    assert "#0 – #1</td>" in html and "labeled split of v1" in html and "no scored pool for v1" in html
    assert "#2 – #5</td>" in html and "scored pool of v1" in html
    assert "the unlabeled pool scored by v1 (1,200 examples, 1,200 sampled)" in html
    # the alert card of window 4 names its reference
    assert "Compared with the scored pool: the unlabeled pool scored by v1" in html
    assert "Reference setting: <strong>scored pool</strong>" in html


def test_windows_from_before_the_record_show_the_labeled_split(project, reviewer, page_client, as_reviewer):
    version = factories.model_version(project, 1, serving=True)
    factories.drift_windows(project, 3, version=version)  # no details["reference"]: measured before

    html = page_client(reviewer).get(reverse("drift", args=[project.id])).content.decode()
    assert "recorded before windows named their reference" in html

    body = as_reviewer.get(f"/api/v1/projects/{project.id}/drift/").json()
    assert {r["reference"]["kind"] for r in body["results"]} == {"labeled_split"}
    assert all(r["reference"]["model_version"] == 1 for r in body["results"])


def test_the_api_returns_the_recorded_reference(project, as_reviewer):
    version = factories.model_version(project, 1, serving=True)
    _windows(project, version)

    results = as_reviewer.get(f"/api/v1/projects/{project.id}/drift/").json()["results"]

    by_sequence = {r["sequence"]: r["reference"] for r in results}
    assert by_sequence[5] == POOL and by_sequence[0] == LABELED
