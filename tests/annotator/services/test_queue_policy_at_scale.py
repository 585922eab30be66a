"""The rebuild at scale: the bulk rebuild (counts, top-k in SQL, candidate embeddings, one INSERT) gives the same
queue as the old per-item path that loaded the whole pool, runs a number of queries that does not grow with the
pool, and its SQL holdout reservation is the Python one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from annotator.models import Example, ExampleScore, ModelVersion, Project, QueueItem
from annotator.services import queue_policy, queue_pool
from annotator.services.holdout import (
    HOLDOUT_RULE,
    HOLDOUT_SHARE,
    holdout_hash,
    reserved_bound,
    reserved_condition,
    reserved_for_holdout,
)
from annotator.services.pool_embeddings import pool_embeddings_for, pool_embeddings_save
from annotator.services.projects import project_update_settings
from annotator.services.queue import queue_add_many, queue_lease
from annotator.services.queue_policy import pick_items
from annotator.services.queue_pool import ScoredPool
from annotator.services.scoring import save_scores, score_rows
from tests.annotator.services import queue_policy_before as before

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["positive", "negative", "neutral"]
QUOTA = {"uncertain": 60, "suspect": 8, "drift": 10, "random": 5}


def _import(project: Project, admin: Any, n: int, prefix: str, *, labeled: bool = False) -> list[int]:
    from annotator.services.examples import examples_import

    if n == 0:
        return []
    rows = [{"external_id": f"{prefix}{i}", "text": f"text {prefix} {i}",
             **({"label": NAMES[i % 3]} if labeled else {})} for i in range(n)]
    return sorted(examples_import(project=project, user=admin, rows=rows).ids)


def _version(project: Project, *, n_labeled: int = 100, number: int = 1) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project, number=number, status=ModelVersion.Status.READY, snapshot={"n_labeled": n_labeled},
        metrics={"macro_f1": 0.8, "holdout": {"rule": dict(HOLDOUT_RULE), "cut": HOLDOUT_SHARE}})


def _score(version: ModelVersion, ids: list[int], probs: np.ndarray, **extra: Any) -> None:
    rows = score_rows(version, ids, probs, [NAMES[int(p.argmax())] for p in probs], False)
    for row, values in zip(rows, extra.get("per_row", [{}] * len(rows)), strict=True):
        for key, value in values.items():
            setattr(row, key, value)
    save_scores(version, rows)


def _pool(project: Project, admin: Any, *, n_pool: int = 3000, n_production: int = 60, n_labeled_rows: int = 40,
          n_labeled: int = 100, crowd_reserved: bool = False, seed: int = 0) -> ModelVersion:
    """A scored project: ``n_labeled_rows`` imported labels (a third flagged, two settled), ``n_pool`` unlabeled
    examples and ``n_production`` production samples, with clustered embeddings and a block of exact ties.
    ``crowd_reserved``: the examples kept for the holdout are the most uncertain of all."""
    rng = np.random.default_rng(seed)
    labeled = _import(project, admin, n_labeled_rows, "l", labeled=True)
    pool = _import(project, admin, n_pool, "u")
    production = _import(project, admin, n_production, "p")
    Example.objects.filter(id__in=production).update(source="production")
    Example.objects.filter(id__in=labeled[:2]).update(settled=True, confirmations=2)
    version = _version(project, n_labeled=n_labeled)
    unlabeled = pool + production
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=len(unlabeled))
    probs[100:130] = [0.4, 0.35, 0.25]  # exact ties: the example id decides
    if crowd_reserved:
        probs[reserved_for_holdout(unlabeled, HOLDOUT_SHARE)] = [0.34, 0.33, 0.33]
    _score(version, unlabeled, probs)
    # Rewritten rows move to the end of the table: its physical order is no longer the example ids' order.
    ExampleScore.objects.filter(model_version=version, example_id__in=unlabeled[::2]).update(margin=F("margin"))
    quality = rng.uniform(0.0, 0.6, size=len(labeled))
    _score(version, labeled, rng.dirichlet([2.0, 1.0, 1.0], size=len(labeled)),
           per_row=[{"is_issue": i % 3 == 0, "label_quality": float(q), "suggested_label": "negative"}
                    for i, q in enumerate(quality)])
    centres = rng.normal(size=(12, 32))
    embeddings = centres[rng.integers(0, 12, size=len(unlabeled))] + 0.1 * rng.normal(size=(len(unlabeled), 32))
    for index, start in enumerate(range(0, len(unlabeled), 700)):
        pool_embeddings_save(version, index, unlabeled[start:start + 700], embeddings[start:start + 700])
    return version


def _written_queue(project: Project, version: ModelVersion, picked: dict, state: dict, add: Any) -> list[tuple]:
    """Write the picks as the rebuild does, read the queue back in lease order, then clear it."""
    slots = 1 if state["ranking"] == "activelab" else None
    for reason, items in picked.items():
        add(project=project, reason=reason, items=items, model_version_id=version.id,
            slots=slots if reason == "suspect" else None)
    queue = list(QueueItem.objects.filter(project=project).order_by("reason", "-priority", "id").values_list(
        "example_id", "reason", "priority", "slot", "explanation", "status", "model_version_id"))
    QueueItem.objects.filter(project=project).delete()
    return queue


@pytest.mark.parametrize("case", [
    {"settings": {}},  # entropy, diverse: the default
    {"settings": {"query_strategy": "margin", "diversity": False}},
    {"settings": {"query_strategy": "least_confidence"}},
    {"settings": {"query_strategy": "random"}},
    {"settings": {}, "n_labeled": 12},  # cold start: representative sample of the whole (small) pool
    {"settings": {"overlap": 2}},  # ActiveLab over suspects and first labels
    {"settings": {}, "quota": {"random": 700}},  # more random items than examples kept for the holdout
    {"settings": {"diversity": False}, "crowd_reserved": True},  # the kept examples crowd the ranking's top
    {"settings": {"query_strategy": "margin"}, "quota": {"uncertain": 400, "drift": 80}},
    # random draws read only the ranges of example ids their positions fall in: many small ranges
    {"settings": {"query_strategy": "random"}, "quota": {"random": 700}, "id_range": 64},
    {"settings": {"overlap": 2}, "quota": {"random": 700}, "id_range": 16},
], ids=["entropy-diverse", "margin", "least-confidence-diverse", "random-strategy", "cold-start", "activelab",
        "random-past-the-holdout", "reserved-crowd-the-top", "large-quota", "random-in-small-ranges",
        "activelab-random-in-small-ranges"])
def test_the_bulk_rebuild_gives_the_same_queue_as_the_old_path(project, admin, case, monkeypatch):
    # Given a scored pool larger than the candidate set the bulk rebuild reads (2,000)
    monkeypatch.setattr(queue_pool, "ID_RANGE", case.get("id_range", queue_pool.ID_RANGE))
    project_update_settings(project=project, settings=case["settings"])
    version = _pool(project, admin, n_labeled=case.get("n_labeled", 100),
                    crowd_reserved=case.get("crowd_reserved", False))
    project.refresh_from_db()
    quota = {**QUOTA, **case.get("quota", {})}
    assert ExampleScore.objects.filter(model_version=version, example__label_source="").count() > 3000

    # When both paths pick and write the queue
    old_picked, old_state = before.pick_items(project, version, quota)
    new_picked, new_state = pick_items(project, version, quota)
    old_queue = _written_queue(project, version, old_picked, old_state, before.queue_add_many)
    new_queue = _written_queue(project, version, new_picked, new_state, queue_add_many)

    # Then the picks, the decisions and the queue rows are the same
    assert sum(len(items) for items in new_picked.values()) >= quota["uncertain"] + quota["random"]
    for reason in new_picked:
        assert new_picked[reason] == old_picked[reason], reason
    assert new_state == old_state
    assert new_queue == old_queue


def _queries(project: Project, version: ModelVersion) -> int:
    with CaptureQueriesContext(connection) as queries:
        picked, state = pick_items(project, version, QUOTA)
        for reason, items in picked.items():
            queue_add_many(project=project, reason=reason, items=items, model_version_id=version.id)
    assert sum(len(items) for items in picked.values()) == sum(QUOTA.values())
    return len(queries)


@pytest.mark.parametrize("policy", [{}, {"query_strategy": "random"}, {"overlap": 2}])
def test_the_rebuild_runs_as_many_queries_for_2000_pool_examples_as_for_200(make_project, admin, policy):
    small = make_project(admin, name="small", settings=policy)
    large = make_project(admin, name="large", settings=policy)
    small_version = _pool(small, admin, n_pool=200, n_production=20)
    large_version = _pool(large, admin, n_pool=2000, n_production=200)
    assert _queries(small, small_version) == _queries(large, large_version)


def test_queue_add_many_writes_any_number_of_items_in_the_same_number_of_queries(project, admin):
    ids = _import(project, admin, 2510, "q")

    def count(items: list[int]) -> int:
        with CaptureQueriesContext(connection) as queries:
            created = queue_add_many(project=project, reason="uncertain", items=[(i, 0.5, "x") for i in items])
        assert created == len(items)
        return len(queries)

    assert count(ids[:10]) == count(ids[10:]) == 1


def test_queue_add_many_leaves_open_slots_alone_and_keeps_the_first_of_a_repeated_example(project, admin,
                                                                                         annotator):
    ids = _import(project, admin, 4, "q")
    assert queue_add_many(project=project, reason="suspect", items=[(ids[0], 1.0, "first")]) == 1
    leased = queue_lease(project=project, user=annotator, n=1)
    assert [item.example_id for item in leased] == [ids[0]]

    created = queue_add_many(project=project, reason="uncertain", items=[
        (ids[0], 0.9, "open already"), (ids[1], 0.8, "kept"), (ids[1], 0.1, "repeat"), (ids[2], 0.0, "x" * 400)])

    assert created == 2
    rows = list(QueueItem.objects.filter(project=project, reason="uncertain").order_by("id").values_list(
        "example_id", "priority", "explanation", "status", "slot"))
    assert rows == [(ids[1], 0.8, "kept", "pending", 0), (ids[2], 0.0, "x" * 300, "pending", 0)]


def test_queue_add_many_writes_one_item_per_overlap_slot(project, admin):
    project_update_settings(project=project, settings={"overlap": 3})
    project.refresh_from_db()
    ids = _import(project, admin, 2, "q")
    assert queue_add_many(project=project, reason="uncertain", items=[(i, 0.5, "") for i in ids]) == 6
    assert queue_add_many(project=project, reason="uncertain", items=[(i, 0.5, "") for i in ids]) == 0
    slots = sorted(QueueItem.objects.filter(project=project).values_list("example_id", "slot"))
    assert slots == [(i, s) for i in ids for s in range(3)]


# --- the holdout reservation in SQL ---------------------------------------------------------------------------
def test_the_sql_reservation_is_the_python_one(project, admin):
    ids = _import(project, admin, 3000, "h")
    examples = Example.objects.filter(project=project)
    # the share, a cut at some example's own hash (that example is not below it), and the extremes
    for cut in (HOLDOUT_SHARE, holdout_hash(ids[1234]), holdout_hash(ids[7]), 0.0, 1.0, 1e-12):
        in_sql = set(examples.filter(reserved_condition(cut, "id")).values_list("id", flat=True))
        out_sql = set(examples.filter(reserved_condition(cut, "id", kept=False)).values_list("id", flat=True))
        in_python = {pk for pk, keep in zip(ids, reserved_for_holdout(ids, cut), strict=True) if keep}
        assert in_sql == in_python, cut
        assert out_sql == set(ids) - in_python, cut
    assert ids[1234] not in set(examples.filter(reserved_condition(holdout_hash(ids[1234]), "id")).values_list(
        "id", flat=True))


def test_the_reserved_bound_is_the_first_prefix_whose_hash_reaches_the_cut():
    for cut in (0.2, 0.5, 1.0, 1e-9, 0.123456789):
        bound = reserved_bound(cut)
        assert float(bound - 1) / 2.0**64 < cut <= float(bound) / 2.0**64
    assert reserved_bound(0.0) == 0 and reserved_bound(2.0) == 2**64


# --- candidates' embeddings ---------------------------------------------------------------------------------
def test_pool_embeddings_for_reads_the_rows_asked_for_in_their_order(project):
    version = _version(project)
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(30, 8)).astype(np.float16)
    pool_embeddings_save(version, 0, list(range(100, 115)), embeddings[:15])
    pool_embeddings_save(version, 1, list(range(115, 130)), embeddings[15:])

    rows = pool_embeddings_for(version, [129, 100, 117, 100])

    assert rows is not None and rows.dtype == np.float16
    np.testing.assert_array_equal(rows, embeddings[[29, 0, 17, 0]])
    assert pool_embeddings_for(version, [100, 999]) is None  # one without an embedding
    assert pool_embeddings_for(version, []) is None
    assert pool_embeddings_for(_version(project, number=2), [100]) is None  # a version that saved none


def test_pool_embeddings_for_reads_compressed_chunks_too(project):
    from annotator.serving import version_dir

    version = _version(project)
    directory = version_dir(version) / "pool-embeddings"
    directory.mkdir(parents=True, exist_ok=True)
    embeddings = np.arange(40, dtype=np.float16).reshape(10, 4)
    np.savez_compressed(directory / "chunk-00000.npz", ids=np.arange(10, dtype=np.int64), embeddings=embeddings)
    np.testing.assert_array_equal(pool_embeddings_for(version, [3, 1]), embeddings[[3, 1]])


# --- cold start on a pool larger than its sample --------------------------------------------------------------
def test_cold_start_clusters_a_bounded_uniform_sample_of_open_examples(project, admin, monkeypatch):
    monkeypatch.setattr(queue_policy, "COLD_START_SAMPLE", 400)
    version = _pool(project, admin, n_pool=1500, n_production=30, n_labeled=12)
    read: list[list[int]] = []
    real = queue_policy.pool_embeddings_for

    def spy(version: ModelVersion, ids: list[int]) -> np.ndarray | None:
        read.append(list(ids))
        return real(version, ids)

    monkeypatch.setattr(queue_policy, "pool_embeddings_for", spy)
    picked, state = pick_items(project, version, {"uncertain": 20, "drift": 5})
    again, _ = pick_items(project, version, {"uncertain": 20, "drift": 5})

    # the sample: the 400 open examples (not kept for the holdout, not taken as drift) first by a hash of the
    # version number and the id, in id order; and only their embeddings were read
    drift = {eid for eid, _, _ in picked["drift"]}
    open_ids = [pk for pk in ExampleScore.objects.filter(model_version=version, example__label_source="")
                .values_list("example_id", flat=True) if holdout_hash(pk) >= HOLDOUT_SHARE and pk not in drift]
    expected = sorted(sorted(open_ids, key=lambda pk: hashlib.sha256(f"sample:1:{pk}".encode()).digest())[:400])
    assert read == [expected, expected]
    chosen = [eid for eid, _, _ in picked["uncertain"]]
    assert state["cold_start"] and len(set(chosen)) == 20 and set(chosen) <= set(expected)
    assert picked == again  # deterministic per version
    assert all(text.startswith("cold start") for _, _, text in picked["uncertain"])


@pytest.mark.parametrize("id_range", [4096, 7])
def test_the_sample_draws_the_same_positions_as_random_batch(project, admin, monkeypatch, id_range):
    from training.query import random_batch

    monkeypatch.setattr(queue_pool, "ID_RANGE", id_range)

    version = _pool(project, admin, n_pool=500, n_production=0)
    scored = ScoredPool(version, HOLDOUT_SHARE)
    census = scored.census()
    every = [pk for pk in sorted(ExampleScore.objects.filter(model_version=version, example__label_source="")
                                 .values_list("example_id", flat=True)) if holdout_hash(pk) >= HOLDOUT_SHARE]
    assert census.open == len(every) and census.reserved == 500 - len(every)
    rows = scored.sample(census.open, 25, ("example_id",), seed=7)
    assert [eid for (eid,) in rows] == [every[i] for i in random_batch(len(every), 25, seed=7)]
    # leaving out some open examples shifts the positions past them
    left_out = set(every[::3])
    rest = [pk for pk in every if pk not in left_out]
    rows = scored.sample(len(rest), 40, ("example_id", "entropy"), seed=8, exclude=left_out)
    assert [eid for eid, _ in rows] == [rest[i] for i in random_batch(len(rest), 40, seed=8)]
    reserved = sorted(set(ExampleScore.objects.filter(model_version=version, example__label_source="")
                          .values_list("example_id", flat=True)) - set(every))
    rows = scored.sample(census.reserved, 10, ("example_id",), seed=9, reserved=True)
    assert [eid for (eid,) in rows] == [reserved[i] for i in random_batch(len(reserved), 10, seed=9)]


# --- the embedded SQLite default ------------------------------------------------------------------------------
def test_the_bulk_rebuild_works_on_sqlite_too(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DATA_DIR=str(tmp_path), ARTIFACT_DIR=str(tmp_path / "artifacts"), SECRET_KEY="test-only-secret")
    done = subprocess.run([sys.executable, "-m", "tests.annotator.services.sqlite_rebuild"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["same"] and outcome["reserved_same"] and outcome["n_reserved"] > 50
    assert outcome["picked"]["random"] == 150 and outcome["picked"]["uncertain"] == 40
    assert outcome["created"] == outcome["picked"]
