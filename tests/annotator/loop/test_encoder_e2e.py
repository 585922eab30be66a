"""A project on an encoder of the operator's list, end to end on PostgreSQL with a real worker (issue 16, part 1):
it trains and serves with that encoder, each version records the encoder's name and fingerprint, and a changed
encoder starts fresh (its fingerprint keys new cache rows; nothing of the old encoder's is reused)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from annotator.models import ModelVersion, Project
from tests.annotator.loop.conftest import wait_idle
from tests.annotator.loop.polling import poll_job
from tests.annotator.loop.steps import TRAIN_TIMEOUT, import_rows, start_training, train
from tests.annotator.loop.workers import WorkerProcess, Workers
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder, EncoderConfig

LABELS = ["sports", "food", "tech"]
# Every word is in the tiny encoder's vocabulary (tests/tiny_bert.py).
TOPIC_WORDS = {
    "sports": ["team", "won", "match", "goal", "coach", "league", "scored", "final"],
    "food": ["chef", "baked", "bread", "soup", "kitchen", "cooked", "pasta", "sauce", "spicy", "garlic"],
    "tech": ["laptop", "chip", "software", "update", "server", "crashed", "faster", "memory", "cloud", "data"],
}
FILLER = ["the", "a", "today", "again", "new", "old", "very", "and", "with", "after"]


def _rows(n_per_label: int, *, labeled: bool, offset: int) -> list[dict[str, Any]]:
    rng = random.Random(offset)
    rows = []
    for label, words in TOPIC_WORDS.items():
        for i in range(n_per_label):
            text = " ".join(rng.choice(words) if j % 2 else rng.choice(FILLER) for j in range(8))
            row = {"external_id": f"{label}-{offset + i}", "text": f"{text} {offset + i}"}
            if labeled:
                row["label"] = label
            rows.append(row)
    return rows


@pytest.fixture
def encoder_worker(no_shared_worker: Workers, tiny_encoders: dict[str, str]) -> Iterator[WorkerProcess]:
    """A worker whose operator lists the tiny encoders (RELABEL_ENCODERS), as this process's settings do."""
    listed = {name: tiny_encoders[name] for name in ("tiny", "tiny-b")}
    worker = no_shared_worker.new(RELABEL_ENCODERS=json.dumps(listed)).start()
    try:
        yield worker
        wait_idle(worker)
    finally:
        worker.stop()


def _cache() -> EmbeddingCache:
    return EmbeddingCache(Path(settings.EMBEDDING_CACHE_DIR) / "embeddings.sqlite3")


def _fingerprint(directory: str, *, max_length: int, pooling: str = "mean") -> str:
    return Encoder(EncoderConfig(model_dir=directory, max_length=max_length, pooling=pooling)).fingerprint


def _versions(client: Any, project_id: int) -> dict[int, dict[str, Any]]:
    response = client.get(f"/api/v1/projects/{project_id}/models/")
    assert response.status_code == 200, response.content
    return {v["number"]: v for v in response.json()["results"]}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_project_trains_serves_and_starts_fresh_on_its_own_encoder(encoder_worker, loop_project, as_admin,
                                                                     tiny_encoders):
    # Given a project on the tiny encoder (32 tokens, frozen), 36 labeled and 15 unlabeled texts
    project = loop_project(labels=LABELS, encoder="tiny", max_length=32, train_mode="frozen", queue_size=20)
    labeled = _rows(12, labeled=True, offset=0)
    import_rows(as_admin, project.id, labeled)
    import_rows(as_admin, project.id, _rows(5, labeled=False, offset=100))
    cache = _cache()

    # When it trains
    first = train(as_admin, project.id, mode="frozen", diagnostics=encoder_worker.log_tail)

    # Then version 1 records the tiny encoder, by name and by the fingerprint that keys its cached embeddings
    fp_a = _fingerprint(tiny_encoders["tiny"], max_length=32)
    v1 = _versions(as_admin, project.id)[1]
    assert first["result"]["model_version"] == 1
    assert v1["encoder"] == {"name": "tiny", "fingerprint": fp_a, "model_type": "bert", "hidden_size": 32,
                             "parameters": 21760, "pooling": "mean", "max_length": 32}
    assert v1["mode"] == "frozen"
    assert cache.count(fp_a) >= len(labeled)
    stored = ModelVersion.objects.get(project=project, number=1).config["encoder"]
    assert stored["model_dir"] == tiny_encoders["tiny"] and stored["name"] == "tiny"

    # and predictions come from it
    response = as_admin.post(f"/api/v1/projects/{project.id}/predict/",
                             {"texts": ["the team scored a goal", "the chef baked bread"]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == 1 and len(body["predictions"]) == 2
    for prediction in body["predictions"]:
        assert set(prediction["probs"]) == set(LABELS) and prediction["label"] in LABELS
        assert math.isclose(sum(prediction["probs"].values()), 1.0, abs_tol=1e-4)

    # When the admin switches to the other tiny encoder (other weights) and trains again
    patched = as_admin.patch(f"/api/v1/projects/{project.id}/", {"settings": {"encoder": "tiny-b"}}, format="json")
    assert patched.status_code == 200, patched.content
    rows_of_a = cache.count(fp_a)
    train(as_admin, project.id, mode="frozen", diagnostics=encoder_worker.log_tail)

    # Then version 2 records the new encoder, every labeled text was embedded afresh under its fingerprint, and
    # nothing was added to, or read as, the old encoder's rows
    fp_b = _fingerprint(tiny_encoders["tiny-b"], max_length=32)
    versions = _versions(as_admin, project.id)
    assert versions[2]["encoder"]["name"] == "tiny-b" and versions[2]["encoder"]["fingerprint"] == fp_b != fp_a
    assert versions[1]["encoder"]["name"] == "tiny", "a version's record never changes"
    assert cache.count(fp_b) >= len(labeled)
    assert cache.count(fp_a) == rows_of_a


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_encoder_the_operator_no_longer_lists_fails_the_job_and_makes_no_version(encoder_worker, loop_project,
                                                                                  as_admin):
    # Given a project whose encoder the operator has since taken off the worker's list
    project = loop_project(labels=LABELS, max_length=32)
    import_rows(as_admin, project.id, _rows(4, labeled=True, offset=0))
    Project.objects.filter(pk=project.pk).update(settings={"encoder": "retired", "max_length": 32})

    # When training is asked for
    job = start_training(as_admin, project.id, mode="frozen")
    finished, _ = poll_job(as_admin, job["id"], timeout=TRAIN_TIMEOUT, diagnostics=encoder_worker.log_tail)

    # Then the job fails saying what to do, and no version was made
    assert finished["status"] == "failed"
    assert "unknown encoder 'retired'" in finished["message"]
    assert "change it in the project's settings (the serving version is unchanged)" in finished["message"]
    assert not ModelVersion.objects.filter(project=project).exists()
