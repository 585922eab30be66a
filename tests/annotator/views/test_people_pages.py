"""Projects and people: create a project from the page, edit labels without losing history (rename, add,
retire), manage members with the last-admin guard, and staff-only user creation."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.urls import reverse

from annotator.models import Annotation, ExampleScore, LabelClass, Membership, Project, Role
from annotator.selectors.export import export_lines
from tests.annotator.conftest import PASSWORD
from tests.annotator.views import factories


def _labels(project: Project) -> list[tuple[str, str, str, bool]]:
    return list(LabelClass.objects.filter(project=project).order_by("position")
                .values_list("name", "description", "example", "retired"))


def _export(project: Project) -> list[dict[str, Any]]:
    return [json.loads(line) for line in "".join(export_lines(project, "jsonl")).splitlines() if line]


# --- create a project -----------------------------------------------------------------------------------
def test_anyone_logged_in_creates_a_project_with_described_labels_and_becomes_its_admin(make_user, page_client):
    carol = make_user("carol")
    client = page_client(carol)
    assert client.get(reverse("project-create")).status_code == 200

    response = client.post(reverse("project-create"), {
        "name": "Support tickets", "task": "multi_label", "guidelines": "Read the whole ticket.",
        "label_name": ["billing", "bug", "", "praise"],
        "label_description": ["money matters", "something is broken", "", ""],
        "label_example": ["I was charged twice", "", "", "Love it"],
    })

    project = Project.objects.get(name="Support tickets")
    assert response.status_code == 302 and response["Location"] == reverse("members", args=[project.id])
    assert project.task == "multi_label" and project.setting("guidelines") == "Read the whole ticket."
    assert _labels(project) == [("billing", "money matters", "I was charged twice", False),
                                ("bug", "something is broken", "", False), ("praise", "", "Love it", False)]
    assert Membership.objects.get(project=project).role == Role.ADMIN
    assert Membership.objects.get(project=project).user == carol


def test_the_create_page_offers_the_operators_encoders_and_refuses_others(make_user, page_client, tiny_encoders,
                                                                        settings, tmp_path):
    from tests.tiny_bert import tiny_bert

    settings.ENCODERS = {**settings.ENCODERS, "wide": str(tiny_bert(tmp_path / "wide", max_positions=512))}
    client = page_client(make_user("carol"))
    page = client.get(reverse("project-create")).content.decode()
    assert '<option value="minilm" selected>' in page and '<option value="wide">' in page

    made = client.post(reverse("project-create"), {"name": "Wide", "task": "single_label", "encoder": "wide",
                                                  "label_name": ["a", "b"]})
    # An encoder shorter than the default max tokens is refused with the reason, on the form
    short = client.post(reverse("project-create"), {"name": "Tiny", "task": "single_label", "encoder": "tiny",
                                                   "label_name": ["a", "b"]})
    refused = client.post(reverse("project-create"), {"name": "Path", "task": "single_label",
                                                     "encoder": "/etc/passwd", "label_name": ["a", "b"]})

    assert made.status_code == 302 and Project.objects.get(name="Wide").setting("encoder") == "wide"
    assert short.status_code == 422 and "at most 64 tokens" in short.content.decode()
    assert refused.status_code == 422 and not Project.objects.filter(name="Path").exists()
    assert "minilm" in refused.content.decode()  # the message names the allowed encoders


def test_a_project_without_labels_or_with_a_duplicate_is_refused_and_nothing_is_written(make_user, page_client):
    client = page_client(make_user("carol"))

    empty = client.post(reverse("project-create"), {"name": "X", "task": "single_label", "label_name": ["", ""]})
    duplicate = client.post(reverse("project-create"), {
        "name": "Y", "task": "single_label", "label_name": ["spam", "ham", "spam"],
        "label_description": ["a <b>bold</b> claim", "", ""]})
    bad_task = client.post(reverse("project-create"), {"name": "Z", "task": "regression", "label_name": ["a"]})

    assert empty.status_code == 422 and "labels must be a non-empty list" in empty.content.decode()
    assert duplicate.status_code == 422 and "duplicate label" in duplicate.content.decode()
    # The form comes back as it was sent, escaped.
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in duplicate.content.decode()
    assert bad_task.status_code == 422 and "task must be one of" in bad_task.content.decode()
    assert not Project.objects.exists() and not LabelClass.objects.exists()


# --- labels ---------------------------------------------------------------------------------------------
def test_a_rename_keeps_every_annotation_under_the_new_name_in_history_and_export(project, admin, annotator,
                                                                                  page_client, annotate):
    [first, second] = factories.import_examples(project, admin, ["great stuff", "fine I guess"],
                                                labels=["positive", "neutral"])
    annotate(second, annotator, "positive")
    version = factories.model_version(project, 1)
    ExampleScore.objects.create(example=first, model_version=version, probs=[0.9, 0.05, 0.05], predicted=["positive"],
                                confidence=0.9, entropy=0.2, margin=0.8, suggested_label="positive")
    positive = LabelClass.objects.get(project=project, name="positive")
    before = Annotation.objects.count()

    response = page_client(admin).post(reverse("label-update", args=[project.id, positive.id]),
                                       {"action": "save", "name": "good", "description": "the customer is happy",
                                        "example": "Works great"})

    assert response.status_code == 302
    assert _labels(project)[0] == ("good", "the customer is happy", "Works great", False)
    assert Annotation.objects.count() == before
    assert sorted(tuple(a.labels) for a in Annotation.objects.all()) == [("good",), ("good",), ("neutral",)]
    score = ExampleScore.objects.get(example=first)
    assert score.predicted == ["good"] and score.suggested_label == "good"
    rows = {row["text"]: row for row in _export(project)}
    assert rows["great stuff"]["label"] == "good"
    assert [a["label"] for a in rows["fine I guess"]["annotations"]] == ["neutral", "good"]
    assert rows["fine I guess"]["label"] == "good"


def test_a_rename_to_an_existing_name_is_refused_and_changes_nothing(project, admin, page_client):
    positive = LabelClass.objects.get(project=project, name="positive")
    before = _labels(project)

    response = page_client(admin).post(reverse("label-update", args=[project.id, positive.id]),
                                       {"action": "save", "name": "negative", "description": "changed"})

    assert response.status_code == 422
    assert "a label named &#x27;negative&#x27; already exists" in response.content.decode()
    assert _labels(project) == before


def test_a_retired_label_is_not_offered_for_new_answers_but_stays_in_history(project, admin, annotator, page_client,
                                                                            annotate):
    [labeled] = factories.import_examples(project, admin, ["meh"], labels=["neutral"])
    factories.queued_examples(project, admin, n=2)
    neutral = LabelClass.objects.get(project=project, name="neutral")

    retired = page_client(admin).post(reverse("label-update", args=[project.id, neutral.id]), {"action": "retire"})

    assert retired.status_code == 302 and LabelClass.objects.get(pk=neutral.id).retired
    page = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()
    assert 'value="positive"' in page and 'value="neutral"' not in page
    item = page.split('data-item-id="')[1].split('"')[0]
    refused = page_client(annotator).post(reverse("annotate-submit", args=[project.id, item]), {"label": "neutral"})
    assert refused.status_code == 302
    assert not Annotation.objects.filter(labels=["neutral"]).exclude(example=labeled).exists()
    [row] = [row for row in _export(project) if row["text"] == "meh"]
    assert row["label"] == "neutral" and row["annotations"][0]["label"] == "neutral"
    labels_page = page_client(admin).get(reverse("labels", args=[project.id])).content.decode()
    assert "retired" in labels_page and "Restore neutral" in labels_page

    page_client(admin).post(reverse("label-update", args=[project.id, neutral.id]), {"action": "restore"})
    assert not LabelClass.objects.get(pk=neutral.id).retired


def test_the_last_label_that_is_not_retired_cannot_be_retired(make_project, admin, page_client):
    project = make_project(admin, labels=["only", "other"])
    only, other = LabelClass.objects.filter(project=project).order_by("position")
    client = page_client(admin)
    client.post(reverse("label-update", args=[project.id, other.id]), {"action": "retire"})

    response = client.post(reverse("label-update", args=[project.id, only.id]), {"action": "retire"})

    assert response.status_code == 422 and "at least one label that is not retired" in response.content.decode()
    assert not LabelClass.objects.get(pk=only.id).retired


def test_an_admin_adds_a_label_at_the_end(project, admin, page_client):
    response = page_client(admin).post(reverse("labels", args=[project.id]),
                                       {"name": "mixed", "description": "both", "example": ""})
    again = page_client(admin).post(reverse("labels", args=[project.id]), {"name": "mixed"})

    assert response.status_code == 302
    assert _labels(project)[-1] == ("mixed", "both", "", False)
    assert LabelClass.objects.get(project=project, name="mixed").position == 3
    assert again.status_code == 422 and LabelClass.objects.filter(project=project).count() == 4


def test_label_descriptions_show_escaped_on_the_annotate_page_and_in_its_keyboard_help(project, admin, annotator,
                                                                                        page_client):
    factories.queued_examples(project, admin, n=1)
    negative = LabelClass.objects.get(project=project, name="negative")
    page_client(admin).post(reverse("label-update", args=[project.id, negative.id]), {
        "action": "save", "name": "negative", "description": "<script>alert(1)</script> unhappy",
        "example": "<img src=x onerror=alert(2)>"})

    page = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()
    labels_page = page_client(admin).get(reverse("labels", args=[project.id])).content.decode()

    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; unhappy"
    help_dialog = page.split('id="annotate-help"')[1]
    sidebar = page.split('id="guidelines-title"')[1].split("</aside>")[0]
    assert escaped in help_dialog and escaped in sidebar
    assert "&lt;img src=x onerror=alert(2)&gt;" in sidebar
    assert "<script>alert(1)</script>" not in labels_page and escaped in labels_page


# --- members --------------------------------------------------------------------------------------------
def test_an_admin_adds_changes_and_removes_a_member(project, admin, make_user, page_client):
    make_user("nora")
    client = page_client(admin)
    members = reverse("members", args=[project.id])

    added = client.post(members, {"username": "nora", "role": "annotator"})
    nora = get_user_model().objects.get(username="nora")
    changed = client.post(reverse("member-role", args=[project.id, nora.id]), {"role": "reviewer"})
    role_after_change = Membership.objects.get(project=project, user=nora).role
    removed = client.post(reverse("member-remove", args=[project.id, nora.id]))

    assert added.status_code == changed.status_code == removed.status_code == 302
    assert role_after_change == Role.REVIEWER
    assert not Membership.objects.filter(project=project, user=nora).exists()
    page = client.get(members).content.decode()
    assert "nora removed from Reviews" in page and f'id="member-{nora.id}"' not in page


def test_an_unknown_user_or_role_is_refused_next_to_its_field(project, admin, page_client):
    client = page_client(admin)
    before = sorted(Membership.objects.values_list("user__username", "role"))

    unknown = client.post(reverse("members", args=[project.id]), {"username": "<b>ghost</b>", "role": "annotator"})
    bad_role = client.post(reverse("members", args=[project.id]), {"username": "rita", "role": "owner"})

    assert unknown.status_code == 422 and "no user named &#x27;&lt;b&gt;ghost&lt;/b&gt;&#x27;" in unknown.content.decode()
    assert bad_role.status_code == 422 and "role must be one of" in bad_role.content.decode()
    assert sorted(Membership.objects.values_list("user__username", "role")) == before


def test_the_last_admin_can_be_neither_demoted_nor_removed(project, admin, reviewer, page_client):
    client = page_client(admin)

    demoted = client.post(reverse("member-role", args=[project.id, admin.id]), {"role": "annotator"})
    removed = client.post(reverse("member-remove", args=[project.id, admin.id]))

    assert demoted.status_code == removed.status_code == 422
    assert "a project keeps at least one admin" in removed.content.decode()
    assert Membership.objects.get(project=project, user=admin).role == Role.ADMIN

    client.post(reverse("member-role", args=[project.id, reviewer.id]), {"role": "admin"})
    now = client.post(reverse("member-role", args=[project.id, admin.id]), {"role": "reviewer"})
    assert now.status_code == 302 and Membership.objects.get(project=project, user=admin).role == Role.REVIEWER


def test_a_member_of_another_project_is_404_on_the_role_and_remove_forms(project, admin, outsider, make_project,
                                                                        page_client):
    make_project(outsider, name="Theirs")

    role = page_client(admin).post(reverse("member-role", args=[project.id, outsider.id]), {"role": "annotator"})
    remove = page_client(admin).post(reverse("member-remove", args=[project.id, outsider.id]))

    assert role.status_code == remove.status_code == 404


# --- users ----------------------------------------------------------------------------------------------
def test_staff_create_a_user_who_can_then_log_in(make_user, page_client):
    staff = make_user("stella", is_staff=True)
    client = page_client(staff)
    assert client.get(reverse("user-create")).status_code == 200

    response = client.post(reverse("user-create"), {"username": "newbie", "email": "newbie@example.com",
                                                    "password": PASSWORD, "password2": PASSWORD})

    assert response.status_code == 302
    user = get_user_model().objects.get(username="newbie")
    assert user.email == "newbie@example.com" and not user.is_staff and user.check_password(PASSWORD)
    assert "New user" in client.get(reverse("project-list")).content.decode()


def test_a_user_form_with_problems_is_refused_and_creates_nobody(make_user, page_client):
    client = page_client(make_user("stella", is_staff=True))
    make_user("taken")
    count = get_user_model().objects.count()

    short = client.post(reverse("user-create"), {"username": "x", "password": "short", "password2": "short"})
    differ = client.post(reverse("user-create"), {"username": "y", "password": PASSWORD, "password2": PASSWORD + "!"})
    taken = client.post(reverse("user-create"), {"username": "taken", "password": PASSWORD, "password2": PASSWORD})

    assert short.status_code == differ.status_code == taken.status_code == 422
    assert "at least 8 characters" in short.content.decode()
    assert "the two passwords differ" in differ.content.decode()
    assert "already exists" in taken.content.decode()
    assert get_user_model().objects.count() == count


def test_a_user_who_is_not_staff_cannot_create_users(project, admin, page_client):
    client = page_client(admin)  # a project admin, but not staff

    assert client.get(reverse("user-create")).status_code == 404
    response = client.post(reverse("user-create"), {"username": "sneaky", "password": PASSWORD,
                                                    "password2": PASSWORD})

    assert response.status_code == 404
    assert not get_user_model().objects.filter(username="sneaky").exists()
    assert "New user" not in client.get(reverse("project-list")).content.decode()


def test_the_review_page_offers_no_retired_label_to_relabel_with_but_still_filters_by_it(project, admin, reviewer,
                                                                                          page_client):
    factories.noisy_version(project, admin)
    neutral = LabelClass.objects.get(project=project, name="neutral")
    page_client(admin).post(reverse("label-update", args=[project.id, neutral.id]), {"action": "retire"})

    page = page_client(reviewer).get(reverse("review", args=[project.id])).content.decode()

    filter_form, rest = page.split('name="label"', 1)[1].split("</select>", 1)
    assert '<option value="neutral"' in filter_form
    assert '<option value="positive"' in rest and '<option value="neutral"' not in rest
