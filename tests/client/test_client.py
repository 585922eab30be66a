"""The client's methods against a live server: projects, import, pagination, samples, the queue, jobs, models,
the noise report, members, export, and errors carrying the API's error list."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from relabel_client import Client, Conflict, Forbidden, InvalidRequest, JobFailed, NotFound, Unauthenticated

from annotator.models import Annotation, Example, Job, ModelVersion, Project, QueueItem
from annotator.services.projects import project_create
from tests.client.conftest import LABELS, PASSWORD


def rows(n: int, *, start: int = 0, labeled: bool = True) -> list[dict[str, Any]]:
    return [{"text": f"review number {i}", "external_id": f"r{i}",
             **({"label": LABELS[i % 3]} if labeled else {})} for i in range(start, start + n)]


def test_a_project_is_created_listed_read_and_its_settings_changed(as_admin: Client, admin: Any) -> None:
    # When alice creates a project through the client
    made = as_admin.create_project("Tickets", ["bug", "question"], settings={"lease_seconds": 300})

    # Then she is its admin, it is listed and readable, and a setting can be changed
    assert made["role"] == "admin" and made["labels"] == ["bug", "question"]
    assert [p["id"] for p in as_admin.list_projects()] == [made["id"]]
    assert as_admin.get_project(made["id"])["settings"]["lease_seconds"] == 300
    changed = as_admin.update_settings(made["id"], {"lease_seconds": 120})
    assert changed["settings"]["lease_seconds"] == 120
    assert Project.objects.get(pk=made["id"]).settings["lease_seconds"] == 120


def test_import_from_a_list_in_batches_adds_up_and_is_idempotent(as_reviewer: Client, project: Project) -> None:
    # When 25 rows are imported in batches of 10
    result = as_reviewer.import_examples(project.id, rows(25), batch_size=10)

    # Then all of them are stored, one id per row in row order, with their import labels
    assert result["created"] == 25 and result["unchanged"] == 0 and len(result["ids"]) == 25
    by_external = dict(Example.objects.filter(project=project).values_list("external_id", "id"))
    assert result["ids"] == [by_external[f"r{i}"] for i in range(25)]
    assert Annotation.objects.filter(example__project=project, kind="import").count() == 25

    # and importing the same rows again changes nothing
    again = as_reviewer.import_examples(project.id, rows(25), batch_size=10)
    assert again["created"] == 0 and again["unchanged"] == 25 and again["ids"] == result["ids"]


def test_import_accepts_plain_texts(as_reviewer: Client, project: Project) -> None:
    result = as_reviewer.import_examples(project.id, (f"text {i}" for i in range(3)))
    assert result["created"] == 3
    assert set(Example.objects.filter(project=project).values_list("text", flat=True)) == {"text 0", "text 1", "text 2"}


def test_import_from_a_dataframe_keeps_gaps_unlabeled_and_extra_columns_as_metadata(
    as_reviewer: Client, project: Project,
) -> None:
    pd = pytest.importorskip("pandas")
    # Given a DataFrame with a label column that has a gap and an extra column of numpy integers
    frame = pd.DataFrame({
        "text": ["good", "bad", "unknown yet"],
        "external_id": ["a", "b", "c"],
        "label": ["positive", "negative", None],
        "stars": [5, 1, 3],
    })

    # When it is imported
    result = as_reviewer.import_examples(project.id, frame)

    # Then every row is stored, the gap unlabeled, and the extra column kept in metadata
    assert result["created"] == 3
    examples = {e["external_id"]: e for e in as_reviewer.list_examples(project.id)}
    assert examples["a"]["label"] == "positive" and examples["b"]["label"] == "negative"
    assert examples["c"]["label"] is None
    assert examples["a"]["metadata"] == {"stars": 5}


def test_list_examples_iterates_over_every_page_with_filters(as_reviewer: Client, project: Project) -> None:
    # Given 23 labeled and 4 unlabeled examples
    as_reviewer.import_examples(project.id, rows(23) + rows(4, start=100, labeled=False))

    # When they are listed 5 per page
    listed = list(as_reviewer.list_examples(project.id, page_size=5))

    # Then every example comes exactly once, across six pages
    assert len(listed) == 27 and len({e["id"] for e in listed}) == 27
    assert len(list(as_reviewer.list_examples(project.id, labeled=False, page_size=3))) == 4
    assert {e["label"] for e in as_reviewer.list_examples(project.id, label="neutral", page_size=2)} == {"neutral"}
    assert [e["external_id"] for e in as_reviewer.list_examples(project.id, q="number 22")] == ["r22"]


def test_a_bad_row_raises_the_api_error_with_its_field_and_its_row_in_the_whole_input(
    as_reviewer: Client, project: Project,
) -> None:
    # Given 15 rows whose 13th names a label the project does not have, sent in batches of 10
    bad = rows(15)
    bad[12]["label"] = "sarcastic"

    # When they are imported
    with pytest.raises(InvalidRequest) as raised:
        as_reviewer.import_examples(project.id, bad, batch_size=10)

    # Then the error carries the API's status, field and message, with the row counted over the whole input
    error = raised.value
    assert error.status == 400 and error.code == "invalid"
    assert error.field == "label" and error.index == 12 and "sarcastic" in error.message
    assert error.rows_written == 10  # the first batch was stored, the failing one was not
    assert "row 12 label" in str(error)
    assert Example.objects.filter(project=project).count() == 10


def test_other_error_statuses_have_their_own_exception(as_annotator: Client, as_reviewer: Client, new_client: Any,
                                                       project: Project) -> None:
    with pytest.raises(Forbidden) as forbidden:
        as_annotator.import_examples(project.id, rows(1))
    assert forbidden.value.status == 403
    with pytest.raises(NotFound):
        as_reviewer.get_project(project.id + 1000)
    with pytest.raises(Unauthenticated) as unauthenticated:
        new_client(token="not-a-token").list_projects().__next__()
    assert unauthenticated.value.status == 401
    with pytest.raises(InvalidRequest) as bad_login:
        new_client(username="rita", password="wrong").get_project(project.id)
    assert "credentials" in bad_login.value.message


def test_push_samples_stores_production_rows_and_answers_null_predictions_before_a_model(
    as_reviewer: Client, project: Project, sent_tasks: list[tuple[str, Any]],
) -> None:
    # When 5 samples are pushed in batches of 2, one with metadata
    samples = [{"text": f"live text {i}", "external_id": f"s{i}"} for i in range(5)]
    samples[0]["metadata"] = {"channel": "email"}
    result = as_reviewer.push_samples(project.id, samples, batch_size=2)

    # Then they are stored as production examples, and there are no predictions without a serving model
    assert result["created"] == 5 and len(result["ids"]) == 5
    assert result["predictions"] is None and result["model_version"] is None
    stored = Example.objects.filter(project=project, source="production")
    assert stored.count() == 5
    assert stored.get(external_id="s0").metadata == {"channel": "email"}
    assert any(name.endswith("check_drift") for name, _ in sent_tasks)

    # and predicting without a serving version is a conflict
    with pytest.raises(Conflict):
        as_reviewer.predict(project.id, ["anything"])


def test_the_queue_leases_and_takes_answers(as_reviewer: Client, project: Project) -> None:
    # Given labeled examples a reviewer sent to the queue from the noise report
    ids = as_reviewer.import_examples(project.id, rows(3))["ids"]
    sent = as_reviewer.noise_decisions(project.id, [{"example_id": i, "action": "send_to_queue"} for i in ids])
    assert sent["queue_items_created"] == 3
    assert as_reviewer.queue_stats(project.id)["pending"] == 3

    # When the reviewer leases two items and answers one, skips one, and renews nothing else
    items = as_reviewer.queue_next(project.id, n=2)
    assert len(items) == 2 and {item["reason"] for item in items} == {"suspect"}
    answer = as_reviewer.submit(items[0]["id"], label="neutral", note="checked")
    skipped = as_reviewer.skip(items[1]["id"])
    renewed = as_reviewer.heartbeat(as_reviewer.queue_next(project.id, n=1)[0]["id"])

    # Then the answer is stored and the item closed
    assert answer["label"] == "neutral" and answer["kind"] == "relabel"
    assert QueueItem.objects.get(pk=items[0]["id"]).status == "done"
    assert skipped["status"] == "pending" and renewed["lease_expires_at"]
    example = as_reviewer.get_example(items[0]["example"]["id"])
    assert example["label"] == "neutral" and example["annotations"][-1]["note"] == "checked"

    # and answering a closed item again is an API error
    with pytest.raises((Conflict, InvalidRequest, NotFound)):
        as_reviewer.submit(items[0]["id"], label="positive")


def test_annotate_noise_decisions_and_conflict_settling(as_reviewer: Client, project: Project) -> None:
    ids = as_reviewer.import_examples(project.id, rows(2))["ids"]
    annotation = as_reviewer.annotate(ids[0], label="negative", kind="review")
    assert annotation["kind"] == "review" and annotation["label"] == "negative"
    kept = as_reviewer.noise_decisions(project.id, [{"example_id": ids[1], "action": "keep"}])
    assert kept["kept"] == 1
    report = as_reviewer.noise_report(project.id)
    assert report["issues"]["count"] == 0
    assert list(as_reviewer.noise_issues(project.id)) == []
    assert list(as_reviewer.conflict_groups(project.id)) == []
    assert list(as_reviewer.drift_windows(project.id)) == []
    team = as_reviewer.team(project.id)
    assert isinstance(team, dict) and "alice" in json.dumps(team)
    assert list(as_reviewer.outliers(project.id)) == []
    assert as_reviewer.data_health(project.id)["outliers"] is None
    assert as_reviewer.conflicts(project.id)["count"] == 0
    settled = as_reviewer.settle_conflict(project.id, ids, label="positive")
    assert settled["settled"] == 2 and settled["label"] == "positive"
    with pytest.raises(InvalidRequest) as bad_group:
        as_reviewer.settle_conflict(project.id, [ids[0], 10**9], label="positive")
    assert bad_group.value.field == "example_ids"
    with pytest.raises(ValueError):
        as_reviewer.annotate(ids[0])


def test_members_are_listed_added_and_removed(as_admin: Client, as_reviewer: Client, project: Project,
                                              make_user: Any) -> None:
    make_user("mia")
    assert {m["username"] for m in as_reviewer.list_members(project.id)} == {"alice", "rita", "anna"}
    assert as_admin.add_member(project.id, "mia", "annotator") == {"username": "mia", "role": "annotator"}
    as_admin.remove_member(project.id, "mia")
    assert "mia" not in {m["username"] for m in as_admin.list_members(project.id)}
    with pytest.raises(Forbidden):
        as_reviewer.add_member(project.id, "mia", "admin")


def test_export_streams_every_example_with_its_history(as_admin: Client, project: Project, tmp_path: Any) -> None:
    as_admin.import_examples(project.id, rows(7) + [{"text": "line one\r\nline two", "external_id": "multi"}])

    exported = list(as_admin.export_rows(project.id))
    assert len(exported) == 8
    assert {r["external_id"] for r in exported} == {*(f"r{i}" for i in range(7)), "multi"}
    assert next(r for r in exported if r["external_id"] == "r1")["annotations"][0]["user"] == "alice"

    path = tmp_path / "out.csv"
    written = as_admin.export_to(project.id, path, format="csv")
    assert written == path.stat().st_size > 0
    assert path.read_text(encoding="utf-8").startswith("id,external_id,text")
    buffer = io.BytesIO()
    as_admin.export_to(project.id, buffer)
    assert [json.loads(line)["external_id"] for line in buffer.getvalue().splitlines()] == \
           [r["external_id"] for r in exported]


def test_a_label_studio_export_imports_into_another_project_with_its_labels(
    as_admin: Client, project: Project, admin: Any, tmp_path: Any,
) -> None:
    as_admin.import_examples(project.id, rows(5))
    buffer = io.BytesIO()
    as_admin.export_to(project.id, buffer, format="labelstudio")
    tasks = json.loads(buffer.getvalue())
    assert len(tasks) == 5 and all("text" in task["data"] for task in tasks)

    other = project_create(user=admin, name="copy", task="single_label", labels=list(LABELS), settings=None)
    result = as_admin.import_labelstudio(other.id, tasks)

    assert result["created"] == 5
    copied = {r["text"]: r["label"] for r in as_admin.export_rows(other.id)}
    assert copied == {r["text"]: r["label"] for r in as_admin.export_rows(project.id)}
    with pytest.raises(InvalidRequest):
        as_admin.import_labelstudio(other.id, [{"data": {}}])
    path = tmp_path / "out.parquet"
    assert as_admin.export_to(project.id, path, format="parquet") > 0 and path.read_bytes()[:4] == b"PAR1"


def test_training_returns_a_job_a_second_one_conflicts_and_wait_for_job_sees_it_cancelled(
    as_reviewer: Client, project: Project, sent_tasks: list[tuple[str, Any]],
) -> None:
    # Given a training started through the client (its task is recorded, not run)
    as_reviewer.import_examples(project.id, rows(6))
    job = as_reviewer.train(project.id, mode="frozen")
    assert job["status"] == "queued" and job["kind"] == "train"
    assert any(name.endswith("train_project") for name, _ in sent_tasks)

    # When another training is asked for, it conflicts and names the queued job (or returns it)
    with pytest.raises(Conflict) as conflict:
        as_reviewer.train(project.id)
    assert conflict.value.body["job"]["id"] == job["id"]
    assert as_reviewer.train(project.id, reuse_running=True)["id"] == job["id"]
    assert [j["id"] for j in as_reviewer.list_jobs(project.id)] == [job["id"]]

    # When the job is cancelled, waiting for it ends at once: JobFailed, or the state when asked for it
    as_reviewer.cancel_job(job["id"])
    with pytest.raises(JobFailed) as failed:
        as_reviewer.wait_for_job(job, poll_interval=0.01, progress=False)
    assert failed.value.job["status"] == "cancelled"
    final = as_reviewer.wait_for_job(job["id"], progress=False, raise_on_failure=False)
    assert final["status"] == "cancelled" == Job.objects.get(pk=job["id"]).status


def test_promote_and_rollback(as_reviewer: Client, project: Project) -> None:
    # Given two ready versions, the first serving
    first = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    second = ModelVersion.objects.create(project=project, number=2, status=ModelVersion.Status.READY)
    as_reviewer.promote(first.id)

    # When the second is promoted, then rolled back
    promoted = as_reviewer.promote(second.id)
    assert promoted["promoted"] and as_reviewer.get_project(project.id)["model_version"] == 2
    rolled_back = as_reviewer.rollback(project.id)

    # Then the first serves again and its history records the rollback
    assert rolled_back["number"] == 1 and rolled_back["promoted"]
    assert rolled_back["promotion"]["history"][-1]["rollback"] is True
    assert [v["number"] for v in as_reviewer.list_models(project.id, page_size=1)] == [2, 1]


def test_health_token_revoke_and_session_auth(new_client: Any, as_reviewer: Client, reviewer: Any,
                                             project: Project) -> None:
    health = new_client().health()
    assert health["status"] == "ok" and health["database"] == "ok"

    # A session login (cookie and CSRF token, as a browser) can write too
    session = new_client(username=reviewer.username, password=PASSWORD, auth="session")
    assert session.import_examples(project.id, rows(2))["created"] == 2
    with pytest.raises(Unauthenticated):
        new_client(username=reviewer.username, password="wrong", auth="session").get_project(project.id)

    # A revoked token no longer works
    token = as_reviewer.obtain_token(reviewer.username, PASSWORD)
    with_token = new_client(token=token)
    with_token.revoke_token()
    with pytest.raises(Unauthenticated):
        new_client(token=token).get_project(project.id)


def test_create_user_is_for_staff(new_client: Any, make_user: Any, as_reviewer: Client) -> None:
    make_user("root", is_staff=True)
    staff = new_client(username="root", password=PASSWORD)
    assert staff.create_user("newbie", "a-long-password-1", email="n@example.com")["username"] == "newbie"
    with pytest.raises(Forbidden):
        as_reviewer.create_user("other", "a-long-password-2")
