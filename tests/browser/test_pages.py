"""The pages in a real browser: keyboard-only labeling with undo, a reviewer's relabel, a live job
progress bar, escaping, and role checks. Each test also saves a screenshot to docs/screenshots/."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from annotator.models import Annotation, Job, QueueItem, Role
from annotator.services.projects import member_set, project_create, project_update_settings
from tests.annotator.views import factories

pytestmark = pytest.mark.browser

GUIDELINES = ("Label the customer's overall feeling.\n\nSarcasm counts as negative. Mixed reviews are neutral "
              "unless one side clearly dominates.")
REVIEWS = [
    "The battery lasts two full days and the screen is bright enough to read in the sun. Very happy with it.",
    "Arrived late, the box was crushed.\n\nSupport answered within an hour though, and replaced it.",
    "Oh great, another update that moves every button. Exactly what I wanted.",
    "It does what it says. Nothing more, nothing less.",
    "Stopped charging after a week. Returned it.",
    "Decent sound for the price; the case feels cheap.",
]


@pytest.fixture
def team(make_user: Any) -> dict[str, Any]:
    alice, rita, anna = make_user("alice"), make_user("rita"), make_user("anna")
    project = project_create(user=alice, name="Product reviews", task="single_label",
                             labels=["positive", "negative", "neutral"], settings={"guidelines": GUIDELINES})
    member_set(project=project, username="rita", role=Role.REVIEWER)
    member_set(project=project, username="anna", role=Role.ANNOTATOR)
    return {"project": project, "admin": alice, "reviewer": rita, "annotator": anna}


def _wait_until(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_an_annotator_labels_five_items_with_the_keyboard_alone(page, login, screenshot, team):
    project, anna = team["project"], team["annotator"]
    factories.queued_examples(project, team["admin"], n=6, texts=REVIEWS)
    login(anna)
    page.goto(f"/projects/{project.id}/annotate/")
    visible = page.locator("article.item:not([hidden])")
    expect(visible).to_have_count(1)
    screenshot("annotate")

    seen = []
    for key in ["1", "2", "2", "3", "2"]:
        expect(visible).to_have_count(1)
        item_id = visible.get_attribute("data-item-id")
        assert item_id not in seen
        seen.append(item_id)
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        expect(page.locator(f'article[data-item-id="{item_id}"]')).to_have_count(0)

    expect(page.locator("#session-count")).to_have_text("5")
    assert _wait_until(lambda: Annotation.objects.filter(user=anna).count() == 5)
    answers = dict(Annotation.objects.filter(user=anna).values_list("queue_item_id", "labels"))
    assert [answers[int(i)] for i in seen] == [["positive"], ["negative"], ["negative"], ["neutral"], ["negative"]]

    # U re-opens the last answer; the new answer is a newer annotation that wins.
    page.keyboard.press("u")
    correction = page.locator("article.correction:not([hidden])")
    expect(correction).to_contain_text("you answered negative")
    screenshot("annotate-undo")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#stage-notice")).to_have_text("Changed your answer to positive.")
    last = Annotation.objects.filter(user=anna).latest("id")
    assert last.labels == ["positive"] and last.queue_item_id == int(seen[-1])
    assert [link.label.name for link in last.example.current_labels.all()] == ["positive"]

    page.keyboard.press("?")
    expect(page.locator("#annotate-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#annotate-help")).to_be_hidden()

    # S gives the sixth item back to the queue; nothing else waits.
    expect(visible).to_have_count(1)
    last_id = int(visible.get_attribute("data-item-id"))
    page.keyboard.press("s")
    expect(page.locator(".empty-queue")).to_be_visible()
    assert _wait_until(lambda: QueueItem.objects.get(pk=last_id).status == "pending")


def test_a_reviewer_relabels_a_suspect_from_the_noise_report(page, login, screenshot, team):
    project, rita = team["project"], team["reviewer"]
    noisy = factories.noisy_version(project, team["admin"], labeler=team["annotator"])
    suspect = noisy["issues"][0]
    login(rita)
    page.goto(f"/projects/{project.id}/review/")
    row = page.locator(f"#issue-{suspect.id}")
    expect(row).to_contain_text(suspect.text)
    screenshot("review")

    row.get_by_label(f"New label for {suspect.external_id}").select_option("neutral")
    row.get_by_role("button", name="Relabel").click()

    expect(page.locator(f"#issue-{suspect.id}")).to_have_count(0)
    expect(page.locator(".messages")).to_contain_text("1 relabeled")
    decision = Annotation.objects.filter(example=suspect).latest("id")
    assert (decision.kind, decision.labels, decision.user_id) == ("review", ["neutral"], rita.id)


def test_a_jobs_progress_bar_follows_the_job_until_done(page, login, screenshot, team):
    project = team["project"]
    factories.import_examples(project, team["admin"], REVIEWS, labels=["positive", "negative", None, None, None, None])
    factories.model_version(project, 1, serving=True)
    job = factories.job(project, progress=0.2)
    login(team["reviewer"])
    page.goto(f"/projects/{project.id}/")
    bar = page.locator(f"#job-{job.id} [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", "20")

    Job.objects.filter(pk=job.pk).update(progress=0.65, stage="scoring", message="scoring 4 of 6 chunks")
    expect(bar).to_have_attribute("aria-valuenow", "65", timeout=6000)
    screenshot("overview")
    Job.objects.filter(pk=job.pk).update(progress=1.0, status=Job.Status.SUCCEEDED, stage="done",
                                         message="", result={"model_version": 2, "promoted": True})

    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=6000)
    expect(page.locator(f"#job-{job.id} .status")).to_have_text("Succeeded")
    expect(page.locator(f"#job-{job.id}")).not_to_have_attribute("hx-trigger", re.compile(".*"))


def test_a_text_with_a_script_tag_shows_escaped(page, login, team):
    project = team["project"]
    hostile = "<script>window.__pwned = true</script><b>bold?</b>"
    factories.queued_examples(project, team["admin"], n=1, texts=[hostile])
    login(team["annotator"])
    page.goto(f"/projects/{project.id}/annotate/")

    expect(page.locator("article.item:not([hidden]) .item-text")).to_have_text(hostile)
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".item-text b").count() == 0


def test_an_annotator_gets_404_on_the_review_page(page, login, team):
    login(team["annotator"])

    response = page.goto(f"/projects/{team['project'].id}/review/")

    assert response.status == 404
    page.goto(f"/projects/{team['project'].id}/")
    expect(page.get_by_role("navigation", name="Project")).not_to_contain_text("Review")


def test_screenshots_of_the_other_pages(page, login, screenshot, team, tmp_path):
    project, alice = team["project"], team["admin"]
    project_update_settings(project=project, settings={"overlap": 2})
    noisy = factories.noisy_version(project, alice, labeler=team["annotator"])
    version = noisy["version"]
    for number, (n_train, f1) in enumerate([(400, 0.86), (900, 0.9)], start=2):
        factories.model_version(project, number, n_train=n_train, f1=f1, comparison={
            "against_version": 1, "on": "production", "n": 60, "candidate_macro_f1": f1,
            "serving_macro_f1": 0.82, "promoted": number == 3})
    factories.drift_windows(project, 12, version=version)
    shared = factories.import_examples(project, alice, REVIEWS[:4], prefix="shared")
    from annotator.services.annotations import annotation_create

    for example, (a, b) in zip(shared, [("positive", "positive"), ("negative", "neutral"),
                                        ("negative", "negative"), ("neutral", "neutral")], strict=True):
        annotation_create(example=example, user=team["annotator"], labels=[a])
        annotation_create(example=example, user=team["reviewer"], labels=[b])
    login(alice)
    page.goto("/")
    expect(page.get_by_role("link", name="Product reviews")).to_be_visible()
    screenshot("projects")

    for name, path in [("models", "models/"), ("drift", "drift/"), ("agreement", "review/agreement/"),
                       ("export", "export/")]:
        page.goto(f"/projects/{project.id}/{path}")
        expect(page.locator("main h1")).to_be_visible()
        screenshot(name)

    upload = tmp_path / "reviews.csv"
    upload.write_text("id,review,sentiment\nr-1,\"Great screen, poor battery\",neutral\nr-2,Love it,positive\n"
                      "r-3,Broke on day one,negative\n", encoding="utf-8")
    page.goto(f"/projects/{project.id}/import/")
    page.get_by_label("File").set_input_files(str(upload))
    expect(page.locator("table.preview")).to_contain_text("Great screen, poor battery")
    page.get_by_label("Text").select_option("review")
    page.get_by_label("Label", exact=True).select_option("sentiment")
    page.get_by_label("External id").select_option("id")
    screenshot("import")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-result")).to_contain_text("3 new")
    assert project.examples.filter(external_id__in=["r-1", "r-2", "r-3"]).count() == 3
