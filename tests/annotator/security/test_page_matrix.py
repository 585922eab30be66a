"""Every HTML page and form action against every role, a non-member and an anonymous visitor.

The pages come from Django's URL resolver (everything outside ``api/`` and ``admin/``); a page or form
action missing from ``PAGES`` fails ``test_every_page_is_classified``. A non-member gets 404 on every
project page (never 403: a page they cannot use does not exist for them), an anonymous visitor is sent to
the login page, an annotator gets 404 on the reviewer pages, and a refused request changes nothing.
``tests/annotator/views/test_access.py`` checks the GET side for a few roles; this is the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from annotator.models import Project
from annotator.project_settings import QUEUE_REASONS
from annotator.services.projects import member_set
from annotator.views.pages import INT_SETTINGS
from tests.annotator.security.conftest import ROLES, World, routes, snapshot

LOGIN = "login"  # the expected answer of an anonymous visitor: a redirect to the login page


def by_role(admin: Any, reviewer: Any, annotator: Any, outsider: Any, anonymous: Any = LOGIN) -> dict[str, Any]:
    return {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider,
            "anonymous": anonymous}


MEMBERS_OK = by_role(200, 200, 200, 404)
REVIEWERS_OK = by_role(200, 200, 404, 404)
ADMINS_OK = by_role(200, 404, 404, 404)


@dataclass(frozen=True)
class Page:
    route: str
    method: str
    name: str  # the URL name
    args: tuple[str, ...]  # keys of World.ids(role)
    expected: dict[str, Any]
    data: Any = None  # form data, or a function of World.ids(role)
    writes: bool | None = False
    variant: str = ""

    @property
    def title(self) -> str:
        return f"{self.method.upper()} /{self.route}" + (f" [{self.variant}]" if self.variant else "")


def settings_form(ids: dict[str, Any]) -> dict[str, Any]:
    """The overview's settings form as the page fills it in, with one value changed."""
    project = Project.objects.get(pk=ids["p"])
    form = {name: str(project.setting(name)) for name, _, _ in INT_SETTINGS}
    form["lease_seconds"] = "61"
    form.update({f"mix_{r}": str(project.setting("queue_mix").get(r, 0)) for r in QUEUE_REASONS})
    form.update(guidelines=project.setting("guidelines"), train_mode=project.setting("train_mode"))
    if project.setting("show_suggestions"):
        form["show_suggestions"] = "on"
    return form


PR = "projects/<int:project_id>/"
PAGES = [
    Page("login/", "get", "login", (), by_role(200, 200, 200, 200, 200)),
    Page("login/", "post", "login", (), by_role(200, 200, 200, 200, 200),
         data={"username": "nobody", "password": "wrong"}, variant="bad credentials"),
    Page("logout/", "post", "logout", (), by_role(302, 302, 302, 302, 302)),
    # Not a page of any role: the test client's address is loopback, which METRICS_ALLOWED_IPS allows by
    # default; the token and other addresses are tests/annotator/test_metrics_endpoint.py.
    Page("metrics", "get", "metrics", (), by_role(200, 200, 200, 200, 200)),
    Page("", "get", "project-list", (), by_role(200, 200, 200, 200)),
    Page(PR, "get", "project-overview", ("p",), MEMBERS_OK),
    Page(PR, "get", "project-overview", ("q",), by_role(404, 404, 404, 200), variant="another project"),
    # A training job is queued already: the overview says so with 409.
    Page(PR + "train/", "post", "train", ("p",), by_role(409, 409, 404, 404), data={"mode": "auto"}),
    Page(PR + "settings/", "post", "project-settings", ("p",), by_role(302, 404, 404, 404),
         data=settings_form, writes=True),
    Page(PR + "jobs/<int:job_id>/", "get", "job-status", ("p", "job"), MEMBERS_OK),
    Page(PR + "jobs/<int:job_id>/", "get", "job-status", ("q", "job"), by_role(404, 404, 404, 404),
         variant="a job of another project"),
    Page(PR + "jobs/<int:job_id>/cancel/", "post", "job-cancel", ("p", "job"), by_role(302, 302, 404, 404),
         writes=True),
    Page(PR + "annotate/", "get", "annotate", ("p",), MEMBERS_OK, writes=None),  # leases the next items
    Page(PR + "annotate/<int:item_id>/submit/", "post", "annotate-submit", ("p", "own_item"),
         by_role(302, 302, 302, 404), data={"label": "positive"}, writes=True, variant="own lease"),
    # Someone else's lease: the page says "not saved" and writes nothing.
    Page(PR + "annotate/<int:item_id>/submit/", "post", "annotate-submit", ("p", "others_item"),
         by_role(302, 302, 302, 404), data={"label": "positive"}, variant="someone else's lease"),
    Page(PR + "annotate/<int:item_id>/submit/", "post", "annotate-submit", ("p", "q_item"),
         by_role(404, 404, 404, 404), data={"label": "a"}, variant="an item of another project"),
    Page(PR + "annotate/<int:item_id>/skip/", "post", "annotate-skip", ("p", "own_item"),
         by_role(302, 302, 302, 404), writes=True, variant="own lease"),
    Page(PR + "annotate/<int:item_id>/skip/", "post", "annotate-skip", ("p", "q_item"),
         by_role(404, 404, 404, 404), variant="an item of another project"),
    Page(PR + "annotate/answers/<int:annotation_id>/correct/", "post", "annotate-correct", ("p", "own_answer"),
         by_role(302, 302, 302, 404), data={"label": "neutral"}, writes=True, variant="own answer"),
    Page(PR + "annotate/answers/<int:annotation_id>/correct/", "post", "annotate-correct",
         ("p", "others_answer"), by_role(404, 404, 404, 404), data={"label": "neutral"},
         variant="someone else's answer"),
    Page(PR + "review/", "get", "review", ("p",), REVIEWERS_OK),
    Page(PR + "review/decisions/", "post", "review-decisions", ("p",), by_role(302, 302, 404, 404),
         data=lambda ids: {"row_action": f"keep:{ids['x']}"}, writes=True),
    Page(PR + "review/agreement/", "get", "agreement", ("p",), REVIEWERS_OK),
    Page(PR + "review/conflicts/", "get", "review-conflicts", ("p",), REVIEWERS_OK),
    Page(PR + "review/conflicts/settle/", "post", "review-conflicts-settle", ("p",), by_role(302, 302, 404, 404),
         data=lambda ids: {"example_ids": [ids["x"]], "label": "positive"}, writes=True),
    Page(PR + "review/health/", "get", "review-health", ("p",), REVIEWERS_OK),
    Page(PR + "models/", "get", "models", ("p",), REVIEWERS_OK),
    Page(PR + "models/<int:model_id>/promote/", "post", "model-promote", ("p", "model"),
         by_role(302, 302, 404, 404), writes=True),
    Page(PR + "models/<int:model_id>/promote/", "post", "model-promote", ("p", "q_model"),
         by_role(404, 404, 404, 404), variant="a version of another project"),
    Page(PR + "drift/", "get", "drift", ("p",), REVIEWERS_OK),
    # The team page compares each person with the others: reviewers and admins only, an annotator gets 404.
    Page(PR + "team/", "get", "team", ("p",), REVIEWERS_OK),
    Page(PR + "team/", "get", "team", ("q",), by_role(404, 404, 404, 200), variant="another project"),
    Page(PR + "import/", "get", "import", ("p",), REVIEWERS_OK),
    Page(PR + "import/", "post", "import", ("p",), by_role(422, 422, 404, 404), variant="no file"),
    Page(PR + "export/", "get", "export", ("p",), REVIEWERS_OK),
    Page(PR + "webhooks/", "get", "webhooks", ("p",), ADMINS_OK),
    Page(PR + "webhooks/", "post", "webhooks", ("p",), by_role(200, 404, 404, 404),
         data={"url": "https://93.184.216.34/new", "events": ["job.failed"]}, writes=True),
    Page(PR + "webhooks/", "post", "webhooks", ("p",), by_role(422, 404, 404, 404),
         data={"url": "http://127.0.0.1/admin", "events": ["job.failed"]}, variant="a loopback target"),
    Page(PR + "webhooks/<int:webhook_id>/update/", "post", "webhook-update", ("p", "hook"),
         by_role(302, 404, 404, 404), data={"events": ["queue.low"], "active": "on"}, writes=True),
    Page(PR + "webhooks/<int:webhook_id>/update/", "post", "webhook-update", ("p", "q_hook"),
         by_role(404, 404, 404, 404), data={"events": ["queue.low"]}, variant="an endpoint of another project"),
    Page(PR + "webhooks/<int:webhook_id>/delete/", "post", "webhook-delete", ("p", "hook"),
         by_role(302, 404, 404, 404), writes=True),
    Page(PR + "webhooks/<int:webhook_id>/test/", "post", "webhook-test", ("p", "hook"),
         by_role(302, 404, 404, 404), writes=True),
    Page(PR + "webhooks/<int:webhook_id>/rotate-secret/", "post", "webhook-rotate-secret", ("p", "hook"),
         by_role(200, 404, 404, 404), writes=True),
    Page(PR + "webhooks/deliveries/<int:delivery_id>/redeliver/", "post", "webhook-redeliver", ("p", "delivery"),
         by_role(302, 404, 404, 404), writes=True),
    # Projects and people: anyone logged in creates a project (and becomes its admin); admins edit labels
    # and members; only staff create users, and no role of a project is staff.
    Page("projects/new/", "get", "project-create", (), by_role(200, 200, 200, 200)),
    Page("projects/new/", "post", "project-create", (), by_role(302, 302, 302, 302),
         data={"name": "Mine", "task": "single_label", "label_name": ["a", "b"]}, writes=True),
    Page("projects/new/", "post", "project-create", (), by_role(422, 422, 422, 422),
         data={"name": "Mine", "task": "single_label", "label_name": ["a", "a"]}, variant="a duplicate label"),
    Page("users/new/", "get", "user-create", (), by_role(404, 404, 404, 404)),
    Page("users/new/", "post", "user-create", (), by_role(404, 404, 404, 404),
         data={"username": "made", "password": "long-enough-password", "password2": "long-enough-password"}),
    Page(PR + "labels/", "get", "labels", ("p",), ADMINS_OK),
    Page(PR + "labels/", "post", "labels", ("p",), by_role(302, 404, 404, 404),
         data={"name": "mixed", "description": "both at once"}, writes=True),
    Page(PR + "labels/<int:label_id>/", "post", "label-update", ("p", "label"), by_role(302, 404, 404, 404),
         data={"action": "save", "name": "meh", "description": "neither"}, writes=True),
    Page(PR + "labels/<int:label_id>/", "post", "label-update", ("p", "label"), by_role(302, 404, 404, 404),
         data={"action": "retire"}, writes=True, variant="retire"),
    Page(PR + "labels/<int:label_id>/", "post", "label-update", ("p", "q_label"), by_role(404, 404, 404, 404),
         data={"action": "retire"}, variant="a label of another project"),
    Page(PR + "members/", "get", "members", ("p",), ADMINS_OK),
    Page(PR + "members/", "post", "members", ("p",), by_role(302, 404, 404, 404),
         data={"username": "nora", "role": "annotator"}, writes=True),
    Page(PR + "members/", "post", "members", ("p",), by_role(302, 404, 404, 404),
         data={"username": "oscar", "role": "admin"}, writes=True, variant="add the outsider as admin"),
    Page(PR + "members/<int:user_id>/role/", "post", "member-role", ("p", "spare"), by_role(302, 404, 404, 404),
         data={"role": "reviewer"}, writes=True),
    Page(PR + "members/<int:user_id>/role/", "post", "member-role", ("p", "oscar"), by_role(404, 404, 404, 404),
         data={"role": "admin"}, variant="a user who is not a member"),
    Page(PR + "members/<int:user_id>/remove/", "post", "member-remove", ("p", "spare"),
         by_role(302, 404, 404, 404), writes=True),
]


def site_pages() -> dict[str, Any]:
    return {route: callback for route, callback in routes() if not route.startswith(("api/", "admin/"))}


@pytest.fixture
def page_clients(users: dict[str, Any]) -> dict[str, Client]:
    clients = {}
    for role in ROLES:
        client = Client()
        if role in users:
            client.force_login(users[role])
        clients[role] = client
    return clients


def test_every_page_is_classified():
    classified = {page.route for page in PAGES}
    served = set(site_pages())

    assert not served - classified, f"unclassified page(s), add them to PAGES: {sorted(served - classified)}"
    assert not classified - served, f"PAGES names pages the site does not serve: {sorted(classified - served)}"
    assert all(set(page.expected) == set(ROLES) for page in PAGES)


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES, ids=[page.title for page in PAGES])
def test_every_role_gets_its_page(page: Page, world: World, page_clients: dict[str, Client]):
    problems = []
    for role in ROLES:
        ids = world.ids(role)
        url = reverse(page.name, args=[ids[key] for key in page.args])
        data = page.data(ids) if callable(page.data) else page.data
        with transaction.atomic():
            before = snapshot()
            response = getattr(page_clients[role], page.method)(url, data or {})
            after = snapshot()
            transaction.set_rollback(True)
        wanted = page.expected[role]
        status = response.status_code
        if wanted == LOGIN:
            if status != 302 or not response["Location"].startswith(reverse("login") + "?next="):
                problems.append(f"{role}: {status} {response.get('Location')}, not sent to the login page")
            elif after != before:
                problems.append(f"{role}: sent to log in, yet rows changed")
            continue
        if status != wanted:
            problems.append(f"{role}: {status} (wanted {wanted})")
        elif status >= 400 and after != before:
            problems.append(f"{role}: refused with {status} but the request changed rows")
        elif status < 400 and page.writes is True and after == before:
            problems.append(f"{role}: {status} but nothing was written")
        elif status < 400 and page.writes is False and after != before:
            problems.append(f"{role}: {status}, yet rows changed")
    assert not problems, f"{page.title}:\n" + "\n".join(problems)


@pytest.mark.django_db
def test_a_page_answers_405_to_a_method_it_does_not_list(world: World, page_clients: dict[str, Client]):
    ids = world.ids("admin")
    listed: dict[str, set[str]] = {}
    for page in PAGES:
        listed.setdefault(page.route, set()).add(page.method)
    problems = []
    before = snapshot()
    for page in {p.route: p for p in PAGES}.values():
        url = reverse(page.name, args=[ids[key] for key in page.args])
        for method in {"get", "post"} - listed[page.route]:
            response = getattr(page_clients["admin"], method)(url)
            if response.status_code != 405:
                problems.append(f"{method.upper()} {url}: {response.status_code}")
    assert not problems, problems
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_admin_site_is_for_staff_only(role: str, page_clients: dict[str, Client]):
    """No role of a project opens Django's admin site: it needs ``is_staff``, which the API never grants."""
    response = page_clients[role].get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")



@pytest.mark.django_db
def test_an_item_of_another_project_is_404_even_for_a_member_of_both(world: World, users: dict[str, Any],
                                                                       page_clients: dict[str, Client]):
    """The item's own project decides, not the project in the page's URL: Oscar holds a lease in his
    project and is made a member of Reviews too; answering his item through Reviews' page is a 404."""
    member_set(project=Project.objects.get(pk=world.project), username="oscar", role="annotator")
    before = snapshot()

    for name in ("annotate-submit", "annotate-skip"):
        response = page_clients["outsider"].post(reverse(name, args=[world.project, world.other_item]),
                                                 {"label": "a"})
        assert response.status_code == 404, name

    assert snapshot() == before
