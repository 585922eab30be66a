"""schemathesis over /api/schema/: every operation, in-process against the WSGI app, on PostgreSQL.

Each operation gets a bounded, derandomized hypothesis run (``MAX_EXAMPLES`` cases of schema-valid data
and as many of schema-violating data), half of them aimed at real rows (the project, an example, a
queue item, a job, a model version) and half at ids drawn by hypothesis. Every answer must be no 5xx,
a status code the schema lists, a body that matches the schema and the documented content type.

The bodies are checked against the schema with every declared object closed (tests/annotator/openapi.py):
a field a view returns that its serializer does not declare fails, as a missing or mistyped one does. The
world holds what the loop writes (a version with holdout and noise figures, flagged scores, drift windows,
data health), so the noise report, drift, models, health and queue answers are checked with real content.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from annotator.models import ExampleScore, Job, QueueItem, Role, WebhookDelivery, WebhookEndpoint
from annotator.services.queue import queue_add, queue_lease
from tests.annotator.health_rows import health_examples, health_version
from tests.annotator.openapi import strict_answers
from tests.annotator.views import factories

# Per operation and generation mode; bench/schemathesis_run.py runs more (HOSTILE_MAX_EXAMPLES).
MAX_EXAMPLES = int(os.environ.get("HOSTILE_MAX_EXAMPLES", 12))
NO_INPUT = {"GET /api/v1/health/", "POST /api/v1/auth/token/revoke/"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@cache
def api_schema() -> Any:
    """The schema the app serves, its answers closed to undeclared fields."""
    app = get_wsgi_application()
    served = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    schema = schemathesis.openapi.from_dict(strict_answers(served.raw_schema))
    schema.app, schema.location = app, served.location
    return schema


def operation_labels() -> list[str]:
    return [result.ok().label for result in api_schema().get_all_operations()]


@pytest.fixture
def in_process_requests() -> Any:
    """Keep the test's database connection open across WSGI calls, as Django's own test client does
    (the handler closes connections at the end of a request, which would end the test transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(in_process_requests, make_user, make_project, make_examples, annotate) -> dict[str, Any]:
    """A staff admin with a token, a project with labeled and unlabeled examples, queue items, a
    queued job, a finished (not promoted) model version with holdout and noise figures whose scores flag
    labeled examples, two drift windows, and a version with data health (conflicts, outliers)."""
    admin = make_user("root", is_staff=True, is_superuser=True)
    member = make_user("member")
    project = make_project(admin, members={member: Role.ANNOTATOR})
    examples = make_examples(project, admin, [
        {"text": f"text number {i}", "external_id": f"e{i}", **({"label": "positive"} if i % 2 else {})}
        for i in range(8)
    ])
    annotate(examples[0], admin, "negative")
    queue_add(project=project, examples=examples[:6], reason=QueueItem.Reason.UNCERTAIN, priority=1.0)
    # A queued scoring job to read and cancel; no training job yet, so the first POST train/ is a 202.
    job = Job.objects.create(project=project, kind=Job.Kind.SCORE)
    version = factories.model_version(project, 1)
    version.artifact_path = "project-x/v1/model"
    version.save(update_fields=["artifact_path"])
    scores = ExampleScore.objects.bulk_create(
        ExampleScore(example=example, model_version=version, probs=[0.2, 0.7, 0.1], predicted=["negative"],
                     confidence=0.7, entropy=0.8, margin=0.5, label_quality=0.1 if example.label_source else None,
                     is_issue=bool(example.label_source), suggested_label="negative")
        for example in examples)
    for example, score in zip(examples, scores, strict=True):
        example.latest_score = score
        example.save(update_fields=["latest_score"])
    factories.drift_windows(project, 2, version=version)
    health_version(project, health_examples(project, admin))
    hook = WebhookEndpoint.objects.create(project=project, url="https://93.184.216.34/hook", secret="whsec_x",
                                          events=["job.failed"], created_by=admin)
    delivery = WebhookDelivery.objects.create(endpoint=hook, event="ping", payload={"id": "x", "data": {}})
    token, _ = Token.objects.get_or_create(user=admin)
    return {
        "token": token.key,
        "ids": {
            "project_id": project.id,
            "example_id": examples[1].id,
            # Leased to the caller: heartbeat and skip answer 200 (until a skip releases it).
            "item_id": queue_lease(project=project, user=admin, n=1)[0].id,
            "job_id": job.id,
            "model_id": version.id,
            "webhook_id": hook.id,
            "delivery_id": delivery.id,
        },
    }


def fuzz(operation: Any, mode: GenerationMode, *, real_ids: dict[str, int], headers: dict[str, str],
         statuses: Counter[int]) -> None:
    """MAX_EXAMPLES derandomized cases of one generation mode, half aimed at the real rows."""
    checks = CHECKS if mode is GenerationMode.POSITIVE else [*CHECKS, negative_data_rejection]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=mode, path_parameters=real_ids or None),
        operation.as_strategy(generation_mode=mode),
    )

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=checks)
        statuses[response.status_code] += 1

    run()


@pytest.mark.django_db
@pytest.mark.parametrize("label", operation_labels())
def test_operation_conforms_to_the_schema(label: str, world: dict[str, Any]) -> None:
    operation = api_schema().find_operation_by_label(label)
    real_ids = {p.name: world["ids"][p.name] for p in operation.path_parameters if p.name in world["ids"]}
    headers = {"Authorization": f"Token {world['token']}"}
    statuses: dict[str, Counter[int]] = {mode.value: Counter() for mode in GenerationMode}

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            fuzz(operation, mode, real_ids=real_ids, headers=headers, statuses=statuses[mode.value])
        except Unsatisfiable:
            # An operation with no parameter and no body (health, token revoke) has no schema to violate.
            assert mode is GenerationMode.NEGATIVE and label in NO_INPUT, label

    _record(label, statuses)
    reached = sum(n for counts in statuses.values() for code, n in counts.items() if code != 404)
    assert reached, f"{label}: every call answered 404; the real rows were never reached ({statuses})"


def _record(label: str, statuses: dict[str, Counter[int]]) -> None:
    """With HOSTILE_STATS=path (bench/schemathesis_run.py) the status codes of every operation are kept."""
    path = os.environ.get("HOSTILE_STATS")
    if not path:
        return
    stats = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    stats[label] = {mode: {str(code): n for code, n in sorted(counts.items())} for mode, counts in statuses.items()}
    Path(path).write_text(json.dumps(stats, indent=1, sort_keys=True))
