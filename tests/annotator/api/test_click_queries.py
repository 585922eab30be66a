"""The two clicks an annotator makes all day, leasing the next item and answering it, run a fixed, small
number of SQL statements, authentication included, however many items a lease takes or the caller holds
(issue 15, "Fast clicks"); and the statements they are written as run on the embedded SQLite default too.

Transaction statements (BEGIN, COMMIT, SAVEPOINT, RELEASE) are not counted: they depend on whether the
test itself runs in a transaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator.models import Annotation, Example, ExampleScore, QueueItem, Role
from annotator.services.projects import member_set
from annotator.services.queue import queue_add
from tests.annotator.assertions import error_list
from tests.annotator.views import factories

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
# token + user; membership, role, project and the membership lock; the lease's candidates; the lease's
# UPDATE; the leased items' examples and suggestions; whether a webhook listens for queue.low.
NEXT_STATEMENTS = 6
# token + user; the locked item with its example and project; the project's labels; the annotation; the
# example's lock and consensus; its annotations; its current labels (delete, insert, the example's row);
# the item's closing UPDATE.
SUBMIT_STATEMENTS = 10
_TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not q["sql"].lstrip().upper().startswith(_TRANSACTION)]


def lease(client: Any, project_id: int, n: int) -> tuple[list[dict[str, Any]], list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/api/v1/projects/{project_id}/queue/next/", {"n": n})
    assert response.status_code == 200, response.content
    return response.json(), statements(captured)


def submit(client: Any, item_id: int, body: dict[str, Any]) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"/api/v1/queue/{item_id}/submit/", body, format="json")
    return response, statements(captured)


@pytest.fixture
def queue(project, admin) -> list[Example]:
    examples = factories.queued_examples(project, admin, n=12)
    factories.queued_examples(project, admin, n=6, reason="random")
    return examples


@pytest.mark.parametrize("n", [1, 10])
def test_leasing_runs_a_fixed_number_of_statements(project, queue, as_annotator, n):
    items, first = lease(as_annotator, project.id, n)
    # Leasing again returns the items the caller holds, renewed: the same statements.
    again, held = lease(as_annotator, project.id, n)

    assert len(items) == n and {i["id"] for i in again} == {i["id"] for i in items}
    assert len(first) <= NEXT_STATEMENTS, first
    assert len(held) <= NEXT_STATEMENTS, held


def test_an_empty_queue_is_leased_in_fewer_statements(project, as_annotator):
    items, run = lease(as_annotator, project.id, 5)

    assert items == []
    assert len(run) <= NEXT_STATEMENTS - 2, run  # nothing to update, no examples to read


@pytest.mark.parametrize("reason", ["uncertain", "suspect"])
def test_answering_runs_a_fixed_number_of_statements(project, admin, as_annotator, reason):
    factories.queued_examples(project, admin, n=3, reason=reason)
    items, _ = lease(as_annotator, project.id, 3)

    runs = []
    for item in items:
        response, run = submit(as_annotator, item["id"], {"label": "negative"})
        assert response.status_code == 201, response.content
        runs.append(run)

    # A suspect answer reads the doubted label once more (did the answer change it?).
    most = SUBMIT_STATEMENTS + (1 if reason == "suspect" else 0)
    assert all(len(run) <= most for run in runs), [len(run) for run in runs]
    assert QueueItem.objects.filter(project=project, status=QueueItem.Status.DONE).count() == 3


def test_an_answer_with_a_history_runs_the_same_statements(project, admin, reviewer, as_annotator, annotate):
    # An example people answered before (an imported label, another person's answer) costs no more.
    [example] = factories.queued_examples(project, admin, n=1)
    annotate(example, reviewer, "positive")
    [item], _ = lease(as_annotator, project.id, 1)

    response, run = submit(as_annotator, item["id"], {"label": "negative"})

    assert response.status_code == 201, response.content
    assert len(run) <= SUBMIT_STATEMENTS, run
    assert Annotation.objects.filter(example=example).count() == 2


def test_refused_clicks_stop_early_and_write_nothing(project, queue, as_annotator, api_client, outsider, make_user):
    [item], _ = lease(as_annotator, project.id, 1)
    bob = make_user("bob")
    member_set(project=project, username=bob.username, role=Role.ANNOTATOR)
    answers = Annotation.objects.count()

    bad_label, bad_run = submit(as_annotator, item["id"], {"label": "great"})
    not_his, not_his_run = submit(api_client(bob), item["id"], {"label": "negative"})
    outside, outside_run = submit(api_client(outsider), item["id"], {"label": "negative"})

    assert bad_label.status_code == 400 and error_list(bad_label)[0]["field"] == "label"
    assert not_his.status_code == 409 and outside.status_code == 404
    assert Annotation.objects.count() == answers
    assert QueueItem.objects.get(pk=item["id"]).status == QueueItem.Status.LEASED
    assert len(bad_run) <= 3 and len(not_his_run) <= 2 and len(outside_run) <= 2


def test_the_lease_answer_keeps_its_fields(project, admin, as_annotator):
    # The statements read what the answer shows: the example, the reason, the explanation, the suggestion.
    [example] = factories.import_examples(project, admin, ["Shipping was slow."], prefix="s")
    example.metadata = {"shop": "north"}
    example.save(update_fields=["metadata"])
    version = factories.model_version(project, 1)
    score = ExampleScore.objects.create(
        example=example, model_version=version, probs=[0.2, 0.7, 0.1], predicted=["negative"], confidence=0.70004,
        entropy=0.8, margin=0.5)
    Example.objects.filter(pk=example.pk).update(latest_score=score)
    queue_add(project=project, examples=[example], reason="uncertain", priority=3.1234567, explanation="why")

    [item], _ = lease(as_annotator, project.id, 1)

    assert item["example"] == {"id": example.id, "external_id": "s-0", "text": "Shipping was slow.",
                               "source": "import", "metadata": {"shop": "north"}}
    assert item["suggestion"] == {"label": "negative", "labels": ["negative"], "confidence": 0.7}
    assert (item["reason"], item["explanation"], item["priority"]) == ("uncertain", "why", 3.123457)
    assert item["lease_expires_at"].endswith("Z")


# --- the same clicks on SQLite ---------------------------------------------------------------------------
def test_the_clicks_work_on_the_embedded_sqlite_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DATA_DIR=str(tmp_path), ARTIFACT_DIR=str(tmp_path / "artifacts"), SECRET_KEY="test-only-secret",
               ALLOWED_HOSTS="testserver")
    done = subprocess.run([sys.executable, "-m", "tests.annotator.api.sqlite_clicks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ids = out["ids"]

    status, first = out["anna_first"]
    # The two best items, one of each reason (the mix is half and half); the scored example carries its
    # suggestion, the other none.
    shown = {item["example"]["id"]: item for item in first}
    assert status == 200 and set(shown) == set(ids[:2])
    assert [item["reason"] for item in first] == ["uncertain", "random"]
    assert shown[ids[0]]["suggestion"] == {"label": "positive", "labels": ["positive"], "confidence": 0.7}
    assert shown[ids[1]]["suggestion"] is None and shown[ids[1]]["example"]["metadata"] == {"row": 1}
    assert out["anna_again"][0] == 200 and {i["id"] for i in out["anna_again"][1]} == {i["id"] for i in first}
    assert out["bob"][0] == 200 and sorted(item["example"]["id"] for item in out["bob"][1]) == ids[2:]
    assert out["oscar"][0] == 404
    assert out["anna_n_0"][0] == 400 and out["anna_n_word"][0] == 400

    assert out["bob_answers_annas"][0] == 409
    assert out["anna_unknown_label"][0] == 400
    assert out["anna_answers"][0] == 201 and out["anna_answers"][1]["label"] == "negative"
    assert out["anna_answers_twice"][0] == 409
    assert out["oscar_answers"][0] == 404
    assert out["anna_renews"][0] == 200 and out["anna_skips"][0] == 200
    # Everything else is leased to bob, and the item anna skipped is not offered to her again for a while.
    assert out["anna_after_skip"] == [200, []]
    assert out["current_label"] == ["negative"] and out["label_source"] == "label"
    statuses = sorted(status for status, _ in out["statuses"].values())
    assert statuses == ["done", "leased", "leased", "leased", "leased", "pending"]

    status, leased = out["overlap_first"]
    assert status == 200 and len(leased) == 3
    assert len({item["example"]["id"] for item in leased}) == 3  # never two slots of one example
    answered = {item["example"]["id"] for item in leased}
    assert not answered & {item["example"]["id"] for item in out["overlap_second"][1]}
    assert len(out["overlap_second"][1]) == 3  # the three examples she has not answered
    assert len(out["overlap_bob"][1]) == 6  # one slot of each of the six examples
