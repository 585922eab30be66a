"""Projects and people in a real browser: create a project with described labels from the keyboard, add a
member, edit labels, create a user as staff, and read label descriptions in the annotate page's keyboard help.
Each page's screenshot goes to docs/screenshots/ (with UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotator.models import LabelClass, Membership, Project, Role
from annotator.services.projects import member_set, project_create
from tests.annotator.views import factories
from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_an_admin_creates_a_project_with_described_labels_and_adds_a_member(page, login, screenshot, make_user):
    alice = make_user("alice")
    make_user("rita")
    login(alice)

    page.get_by_role("link", name="New project").click()
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("Support tickets")
    page.get_by_label("Multi label").check()
    rows = [("billing", "Money: charges, refunds, invoices", "I was charged twice"),
            ("bug", "Something does not work as documented", "The export button does nothing"),
            ("question", "How do I ...?", ""), ("praise", "", "Love the new dashboard"),
            ("<b>other</b>", "Anything else", "")]
    for i, (name, description, example) in enumerate(rows, start=1):
        if i > 4:
            page.keyboard.press("Alt+n")  # the form starts with four rows; Alt+N adds one and focuses it
            expect(page.get_by_label(f"Label {i} name")).to_be_focused()
        page.get_by_label(f"Label {i} name").fill(name)
        page.get_by_label(f"Label {i} description").fill(description)
        page.get_by_label(f"Label {i} example").fill(example)
    page.get_by_label("Labeling guidelines (optional)").fill("Pick every label that applies.")
    screenshot("project-create")
    page.get_by_label("Labeling guidelines (optional)").press("Tab")
    expect(page.get_by_label("Encoder")).to_be_focused()  # the operator's default is selected
    page.get_by_label("Encoder").press("Tab")
    expect(page.get_by_role("button", name="Create project")).to_be_focused()
    page.keyboard.press("Enter")

    page.wait_for_url("**/members/")
    project = Project.objects.get(name="Support tickets")
    assert page.url.endswith(f"/projects/{project.id}/members/")
    expect(page.get_by_text("Project Support tickets created")).to_be_visible()
    assert project.task == "multi_label"
    assert list(LabelClass.objects.filter(project=project).order_by("position").values_list("name", "description")) == [
        (name, description) for name, description, _ in rows]

    page.get_by_label("Username").fill("rita")
    page.get_by_label("Role", exact=True).select_option("reviewer")
    page.get_by_label("Role", exact=True).press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_text("rita is now reviewer of Support tickets.")).to_be_visible()
    assert Membership.objects.get(project=project, user__username="rita").role == Role.REVIEWER
    expect(page.locator("table.grid")).to_contain_text("rita")
    screenshot("members")

    page.get_by_role("link", name="Labels").click()
    expect(page.get_by_label("Name of label 5")).to_have_value("<b>other</b>")
    assert page.locator("b", has_text="other").count() == 0  # the name is text, never markup
    page.get_by_label("Name of label 3").fill("how-to")
    page.get_by_label("Name of label 3").press("Enter")
    expect(page.get_by_text("Label how-to saved (renamed from question; every annotation kept).")).to_be_visible()
    page.get_by_role("button", name="Retire praise").click()
    expect(page.get_by_role("button", name="Restore praise")).to_be_visible()
    screenshot("labels")


def test_staff_create_a_user_who_then_logs_in(page, login, screenshot, make_user):
    stella = make_user("stella")
    stella.is_staff = True
    stella.save(update_fields=["is_staff"])
    login(stella)

    page.get_by_role("link", name="New user").click()
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("newbie")
    page.get_by_label("Email (optional)").fill("newbie@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    screenshot("user-create")
    page.get_by_label("Password again").press("Enter")
    expect(page.get_by_text("User newbie created.")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    page.goto("/login/")
    page.get_by_label("Username").fill("newbie")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("You are not a member of any project yet.")).to_be_visible()
    expect(page.get_by_role("link", name="New user")).to_have_count(0)


def test_label_descriptions_show_on_the_annotate_page_and_in_the_keyboard_help(page, login, make_user):
    alice = make_user("alice")
    make_user("anna")
    project = project_create(user=alice, name="Reviews", task="single_label", labels=[
        {"name": "positive", "description": "The customer is happy <overall>", "example": "Works great"},
        {"name": "negative", "description": "The customer is unhappy"}, "neutral"], settings=None)
    member_set(project=project, username="anna", role=Role.ANNOTATOR)
    factories.queued_examples(project, alice, n=2)
    login(get_user_model().objects.get(username="anna"))
    page.goto(f"/projects/{project.id}/annotate/")

    expect(page.locator("article.item:not([hidden]) .choice").first).to_contain_text("The customer is happy <overall>")
    expect(page.locator("aside.guidelines")).to_contain_text("e.g. “Works great”")
    page.keyboard.press("?")
    help_dialog = page.locator("#annotate-help")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("positive: The customer is happy <overall>")
    expect(help_dialog).to_contain_text("negative: The customer is unhappy")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    expect(page.locator("#announce")).to_have_text("negative picked: The customer is unhappy")
