"""Every API endpoint against every role: admin, reviewer, annotator, a non-member and an anonymous client.

The endpoints come from Django's URL resolver, so an endpoint (or a method of one) that is missing from
``CASES`` fails ``test_every_api_endpoint_is_classified``. Each case runs once per role, each role inside
a savepoint that is rolled back, so all five see the same world. For every answer: the exact status per
API.md (non-members 404 on project-scoped resources, anonymous 401, annotators only their queue work and
their own annotations, reviewers the whole project, admins the members too); an error answers the API's
error shape and changed nothing; an allowed write changed something.

``tests/annotator/api/test_roles.py`` and ``tests/annotator/loop/test_roles.py`` check the wording and
the listing side of the same decisions; this module is the exhaustive matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from tests.annotator.conftest import PASSWORD
from tests.annotator.security.conftest import ROLES, USERNAMES, World, routes, snapshot

API_PREFIXES = ("api/",)
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def by_role(admin: int, reviewer: int, annotator: int, outsider: int, anonymous: int) -> dict[str, int]:
    return {"admin": admin, "reviewer": reviewer, "annotator": annotator, "outsider": outsider,
            "anonymous": anonymous}


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


# Shorthands for the common shapes of a project-scoped endpoint.
MEMBERS_OK = by_role(200, 200, 200, 404, 401)
REVIEWERS_OK = by_role(200, 200, 403, 404, 401)
ADMINS_OK = by_role(200, 403, 403, 404, 401)


@dataclass(frozen=True)
class Case:
    route: str  # the resolver's route
    method: str
    path: str  # formatted with World.ids(role)
    expected: dict[str, int]
    body: Any = None  # or a function of the caller's username (None when anonymous) and World.ids(role)
    writes: bool | None = False  # a 2xx answer changed something (True) / nothing (False) / either (None)
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.route}" + (f" [{self.variant}]" if self.variant else "")


V1 = "api/v1/"
P = V1 + "projects/<int:project_id>/"

CASES = [
    Case(V1 + "health/", "get", "/api/v1/health/", everyone(200)),
    Case(V1 + "auth/token/", "post", "/api/v1/auth/token/", by_role(200, 200, 200, 200, 400),
         body=lambda name, ids: {"username": name or "nobody", "password": PASSWORD}),
    Case(V1 + "auth/token/revoke/", "post", "/api/v1/auth/token/revoke/", by_role(204, 204, 204, 204, 401),
         writes=True),
    Case(V1 + "users/", "post", "/api/v1/users/", by_role(403, 403, 403, 403, 401),
         body={"username": "made", "password": "long-enough-password"}),
    Case(V1 + "projects/", "get", "/api/v1/projects/", by_role(200, 200, 200, 200, 401)),
    Case(V1 + "projects/", "post", "/api/v1/projects/", by_role(201, 201, 201, 201, 401),
         body={"name": "Mine", "task": "single_label", "labels": ["a", "b"]}, writes=True),
    Case(V1 + "projects/", "post", "/api/v1/projects/", by_role(201, 201, 201, 201, 401),
         body={"name": "Mine", "task": "single_label",
               "labels": [{"name": "a", "description": "the first", "example": "an A"}, "b"]},
         writes=True, variant="labels with descriptions"),
    Case(P, "get", "/api/v1/projects/{p}/", MEMBERS_OK),
    Case(P, "get", "/api/v1/projects/{q}/", by_role(404, 404, 404, 200, 401), variant="another project"),
    Case(P, "patch", "/api/v1/projects/{p}/", by_role(200, 403, 403, 404, 401),
         body={"settings": {"lease_seconds": 61}}, writes=True),
    Case(P, "patch", "/api/v1/projects/{p}/", by_role(200, 403, 403, 404, 401),
         body={"labels": [{"name": "neutral", "new_name": "meh", "description": "neither"},
                          {"name": "mixed", "example": "good and bad"}]}, writes=True, variant="label edits"),
    Case(P, "patch", "/api/v1/projects/{p}/", by_role(400, 403, 403, 404, 401),
         body={"labels": [{"name": "neutral", "description": "fine"}, {"name": "neutral", "new_name": "positive"}]},
         variant="a rename onto an existing label"),
    Case(P + "members/", "get", "/api/v1/projects/{p}/members/", REVIEWERS_OK),
    Case(P + "members/", "post", "/api/v1/projects/{p}/members/", by_role(201, 403, 403, 404, 401),
         body={"username": "nora", "role": "admin"}, writes=True),
    Case(P + "members/", "post", "/api/v1/projects/{p}/members/", by_role(201, 403, 403, 404, 401),
         body=lambda name, ids: {"username": name or "nobody", "role": "admin"}, variant="make oneself admin"),
    Case(P + "members/", "delete", "/api/v1/projects/{p}/members/", by_role(204, 403, 403, 404, 401),
         body={"username": "sam"}, writes=True),
    Case(P + "examples/", "get", "/api/v1/projects/{p}/examples/", REVIEWERS_OK),
    Case(P + "examples/", "post", "/api/v1/projects/{p}/examples/", by_role(201, 201, 403, 404, 401),
         body=[{"text": "a new row", "label": "positive"}], writes=True),
    Case(P + "export/", "get", "/api/v1/projects/{p}/export/?format=jsonl", REVIEWERS_OK),
    Case(V1 + "examples/<int:example_id>/", "get", "/api/v1/examples/{x}/", by_role(200, 200, 404, 404, 401)),
    Case(V1 + "examples/<int:example_id>/", "get", "/api/v1/examples/{work}/", MEMBERS_OK,
         variant="the annotator's queue work"),
    Case(V1 + "examples/<int:example_id>/annotations/", "post", "/api/v1/examples/{x}/annotations/",
         by_role(201, 201, 404, 404, 401), body={"label": "neutral"}, writes=True),
    Case(V1 + "examples/<int:example_id>/annotations/", "post", "/api/v1/examples/{work}/annotations/",
         by_role(201, 201, 403, 404, 401), body={"label": "neutral"}, writes=True,
         variant="the annotator's queue work"),
    Case(P + "queue/", "get", "/api/v1/projects/{p}/queue/", MEMBERS_OK),
    Case(P + "queue/next/", "get", "/api/v1/projects/{p}/queue/next/?n=2", MEMBERS_OK, writes=True),
    Case(V1 + "queue/<int:item_id>/submit/", "post", "/api/v1/queue/{own_item}/submit/",
         by_role(201, 201, 201, 404, 401), body={"label": "positive"}, writes=True, variant="own lease"),
    Case(V1 + "queue/<int:item_id>/submit/", "post", "/api/v1/queue/{others_item}/submit/",
         by_role(409, 409, 409, 404, 401), body={"label": "positive"}, variant="someone else's lease"),
    Case(V1 + "queue/<int:item_id>/submit/", "post", "/api/v1/queue/{q_item}/submit/",
         by_role(404, 404, 404, 201, 401), body={"label": "a"}, writes=True, variant="another project"),
    Case(V1 + "queue/<int:item_id>/skip/", "post", "/api/v1/queue/{own_item}/skip/",
         by_role(200, 200, 200, 404, 401), writes=True, variant="own lease"),
    Case(V1 + "queue/<int:item_id>/skip/", "post", "/api/v1/queue/{others_item}/skip/",
         by_role(409, 409, 409, 404, 401), variant="someone else's lease"),
    Case(V1 + "queue/<int:item_id>/heartbeat/", "post", "/api/v1/queue/{own_item}/heartbeat/",
         by_role(200, 200, 200, 404, 401), writes=True, variant="own lease"),
    Case(V1 + "queue/<int:item_id>/heartbeat/", "post", "/api/v1/queue/{others_item}/heartbeat/",
         by_role(409, 409, 409, 404, 401), variant="someone else's lease"),
    # A training job is queued already, so members allowed to train get the deterministic 409.
    Case(P + "train/", "post", "/api/v1/projects/{p}/train/", by_role(409, 409, 403, 404, 401), body={}),
    Case(P + "jobs/", "get", "/api/v1/projects/{p}/jobs/", MEMBERS_OK),
    Case(V1 + "jobs/<int:job_id>/", "get", "/api/v1/jobs/{job}/", MEMBERS_OK),
    Case(V1 + "jobs/<int:job_id>/cancel/", "post", "/api/v1/jobs/{job}/cancel/", REVIEWERS_OK, writes=True),
    Case(P + "models/", "get", "/api/v1/projects/{p}/models/", REVIEWERS_OK),
    Case(V1 + "models/<int:model_id>/promote/", "post", "/api/v1/models/{model}/promote/", REVIEWERS_OK,
         writes=True),
    Case(V1 + "models/<int:model_id>/promote/", "post", "/api/v1/models/{q_model}/promote/",
         by_role(404, 404, 404, 200, 401), writes=True, variant="another project"),
    # No version is promoted: every member may predict and gets the deterministic 409.
    Case(P + "predict/", "post", "/api/v1/projects/{p}/predict/", by_role(409, 409, 409, 404, 401),
         body={"texts": ["is this good?"]}),
    Case(P + "samples/", "post", "/api/v1/projects/{p}/samples/", by_role(201, 201, 403, 404, 401),
         body=[{"text": "a production sample", "external_id": "prod-1"}], writes=True),
    Case(P + "noise-report/", "get", "/api/v1/projects/{p}/noise-report/", REVIEWERS_OK),
    Case(P + "noise-report/decisions/", "post", "/api/v1/projects/{p}/noise-report/decisions/", REVIEWERS_OK,
         body=lambda name, ids: [{"example_id": ids["x"], "action": "keep"}], writes=True),
    Case(P + "noise-report/conflicts/", "get", "/api/v1/projects/{p}/noise-report/conflicts/", REVIEWERS_OK),
    Case(P + "noise-report/conflicts/settle/", "post", "/api/v1/projects/{p}/noise-report/conflicts/settle/",
         REVIEWERS_OK, body=lambda name, ids: {"example_ids": [ids["x"]], "label": "positive"}, writes=True),
    Case(P + "health/", "get", "/api/v1/projects/{p}/health/", REVIEWERS_OK),
    # Annotators are refused the team: it compares each person with the others (docs/api.md).
    Case(P + "team/", "get", "/api/v1/projects/{p}/team/", REVIEWERS_OK),
    Case(P + "team/", "get", "/api/v1/projects/{q}/team/", by_role(404, 404, 404, 200, 401), variant="another project"),
    Case(P + "drift/", "get", "/api/v1/projects/{p}/drift/", REVIEWERS_OK),
    Case(P + "webhooks/", "get", "/api/v1/projects/{p}/webhooks/", ADMINS_OK),
    Case(P + "webhooks/", "post", "/api/v1/projects/{p}/webhooks/", by_role(201, 403, 403, 404, 401),
         body={"url": "https://93.184.216.34/new", "events": ["queue.low"]}, writes=True),
    Case(P + "webhooks/<int:webhook_id>/", "get", "/api/v1/projects/{p}/webhooks/{hook}/", ADMINS_OK),
    Case(P + "webhooks/<int:webhook_id>/", "get", "/api/v1/projects/{p}/webhooks/{q_hook}/",
         by_role(404, 403, 403, 404, 401), variant="an endpoint of another project"),
    Case(P + "webhooks/<int:webhook_id>/", "patch", "/api/v1/projects/{p}/webhooks/{hook}/", ADMINS_OK,
         body={"active": False}, writes=True),
    Case(P + "webhooks/<int:webhook_id>/", "delete", "/api/v1/projects/{p}/webhooks/{hook}/",
         by_role(204, 403, 403, 404, 401), writes=True),
    Case(P + "webhooks/<int:webhook_id>/rotate-secret/", "post", "/api/v1/projects/{p}/webhooks/{hook}/rotate-secret/",
         ADMINS_OK, writes=True),
    Case(P + "webhooks/<int:webhook_id>/test/", "post", "/api/v1/projects/{p}/webhooks/{hook}/test/",
         by_role(202, 403, 403, 404, 401), writes=True),
    Case(P + "webhooks/<int:webhook_id>/deliveries/", "get", "/api/v1/projects/{p}/webhooks/{hook}/deliveries/",
         ADMINS_OK),
    Case(P + "webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver/", "post",
         "/api/v1/projects/{p}/webhooks/{hook}/deliveries/{delivery}/redeliver/", by_role(202, 403, 403, 404, 401),
         writes=True),
    Case("api/schema/", "get", "/api/schema/", everyone(200)),
    Case("api/docs/", "get", "/api/docs/", everyone(200)),
]


def _body(case: Case, role: str, ids: dict[str, Any]) -> Any:
    return case.body(USERNAMES[role], ids) if callable(case.body) else case.body


@pytest.fixture
def clients(users: dict[str, Any], api_client: Callable[[Any], APIClient]) -> dict[str, APIClient]:
    return {role: api_client(users.get(role)) for role in ROLES}


def _methods(callback: Any) -> set[str]:
    view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    assert view is not None, f"{callback} is not a class-based view"
    return {m for m in HTTP_METHODS if hasattr(view, m)}


def api_endpoints() -> set[tuple[str, str]]:
    return {(route, method) for route, callback in routes() if route.startswith(API_PREFIXES)
            for method in _methods(callback)}


def test_every_api_endpoint_is_classified():
    classified = {(case.route, case.method) for case in CASES}
    served = api_endpoints()

    unclassified = sorted(served - classified)
    assert not unclassified, f"unclassified endpoint(s), add them to CASES: {unclassified}"
    assert not classified - served, f"CASES names endpoints the site does not serve: {sorted(classified - served)}"
    # every case names a role's answer for each of the five callers
    assert all(set(case.expected) == set(ROLES) for case in CASES)


def _answer(client: APIClient, case: Case, path: str, body: Any) -> tuple[Any, bytes]:
    response = getattr(client, case.method)(path, body, format="json")
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response, content


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_role_gets_its_answer(case: Case, world: World, clients: dict[str, APIClient]):
    problems = []
    for role in ROLES:
        ids = world.ids(role)
        path = case.path.format(**ids)
        with transaction.atomic():
            before = snapshot()
            response, content = _answer(clients[role], case, path, _body(case, role, ids))
            after = snapshot()
            transaction.set_rollback(True)  # the next role starts from the same world
        status, wanted = response.status_code, case.expected[role]
        if status != wanted:
            problems.append(f"{role}: {status} (wanted {wanted}) {content[:200]!r}")
            continue
        if status >= 400:
            body = response.json()
            if not (isinstance(body.get("errors"), list) and body["errors"]
                    and all(isinstance(e.get("message"), str) for e in body["errors"])):
                problems.append(f"{role}: {status} without the API's error shape: {body}")
            if after != before:
                problems.append(f"{role}: refused with {status} but the request changed rows")
            if status == 401 and not response.get("WWW-Authenticate", "").startswith("Token"):
                problems.append(f"{role}: 401 without a WWW-Authenticate: Token challenge")
        elif case.writes is True and after == before:
            problems.append(f"{role}: {status} but nothing was written")
        elif case.writes is False and after != before:
            problems.append(f"{role}: {status} on a read, yet rows changed")
    assert not problems, f"{case.name}:\n" + "\n".join(problems)


@pytest.mark.django_db
def test_methods_an_endpoint_does_not_serve_are_405_and_write_nothing(world: World, clients):
    ids = world.ids("admin")
    problems = []
    before = snapshot()
    for route, callback in routes():
        if not route.startswith(API_PREFIXES):
            continue
        path = "/" + route
        for converter, key in (("<int:project_id>", "p"), ("<int:example_id>", "x"), ("<int:item_id>", "own_item"),
                               ("<int:job_id>", "job"), ("<int:model_id>", "model"), ("<int:webhook_id>", "hook"),
                               ("<int:delivery_id>", "delivery")):
            path = path.replace(converter, str(ids[key]))
        # DRF checks permissions before the method: where the admin is refused outright, that answer comes first.
        allowed = {405} | {c.expected["admin"] for c in CASES if c.route == route and c.expected["admin"] == 403}
        for method in set(HTTP_METHODS) - _methods(callback):
            response = getattr(clients["admin"], method)(path, {}, format="json")
            if response.status_code not in allowed:
                problems.append(f"{method.upper()} {path}: {response.status_code}")
    assert not problems, problems
    assert snapshot() == before

