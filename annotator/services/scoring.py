"""Scoring a new version's pool in chunks, then what follows the last chunk.

``start_scoring`` splits the unlabeled and production examples into chunks of ``SCORE_CHUNK`` for the scoring
workers; ``score_chunk`` scores one (probabilities, confidence, entropy, margin, upserted; the embeddings kept
for diverse batches, services.pool_embeddings) and counts it; the delivery that saves the last chunk runs
``finish_scoring``: the pool drift reference, the promotion decision (services.models.decide_promotion) and
the queue rebuild, once. ``score_rows`` and ``save_scores`` also write the labeled examples' noise scores
(training) and production predictions (services.production).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from annotator import dispatch
from annotator.db import is_postgres
from annotator.models import Example, ExampleScore, Job, ModelVersion, Project
from annotator.selectors.projects import project_labels
from annotator.services.drift_reference import drift_reference_update
from annotator.services.embeddings import embedding_cache
from annotator.services.jobs import JobReporter, job_create, job_finish, job_finish_first
from annotator.services.models import decide_promotion
from annotator.services.pool_embeddings import pool_embedding_rows, pool_embeddings_key, pool_embeddings_save
from annotator.serving import predictor_for

log = logging.getLogger(__name__)

# Examples per scoring task: the unit of work a killed worker loses and another worker takes over.
SCORE_CHUNK = int(os.environ.get("SCORE_CHUNK_SIZE", 1000))
# ... when the pool's embeddings are stored (a frozen-mode version: its head over stored vectors, no model).
STORED_SCORE_CHUNK = int(os.environ.get("STORED_SCORE_CHUNK_SIZE", 20000))
# Pool examples looked up to decide whether the pool is stored.
STORED_PROBE = 200


def _uncertainty(probs: np.ndarray, multi: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, normalised entropy, margin (best minus second best; multi-label: twice the distance of the
    most undecided class from 0.5) per row, from training's one summary."""
    from training.query import uncertainty_summary

    summary = uncertainty_summary(probs, multi_label=multi)
    return summary["confidence"], summary["entropy"], 1.0 - summary["margin"]


def score_rows(version: ModelVersion, example_ids: list[int], probs: np.ndarray, predicted: list[Any],
                multi: bool) -> list[ExampleScore]:
    confidence, entropy, margin = _uncertainty(probs, multi)
    # Plain values in bulk (a chunk is 20,000 rows): the version by id, never through the related descriptor.
    rounded = np.round(probs, 6).tolist()
    confidence, entropy, margin = confidence.tolist(), entropy.tolist(), margin.tolist()
    return [
        ExampleScore(
            example_id=example_id, model_version_id=version.pk, probs=rounded[i],
            predicted=predicted[i] if multi else [predicted[i]], confidence=confidence[i],
            entropy=entropy[i], margin=margin[i],
        )
        for i, example_id in enumerate(example_ids)
    ]


def save_scores(version: ModelVersion, scores: list[ExampleScore]) -> None:
    """Upsert the scores (one per example and version) and point each example's ``latest_score`` at them."""
    if not scores:
        return
    if is_postgres():
        _save_scores_copy(version, scores)
        return
    ExampleScore.objects.bulk_create(
        scores, batch_size=1000, update_conflicts=True, unique_fields=["example", "model_version"],
        update_fields=list(SCORE_FIELDS),
    )
    ids = [s.example_id for s in scores]
    pairs = dict(ExampleScore.objects.filter(model_version=version, example_id__in=ids).values_list("example_id", "id"))
    examples = [Example(id=example_id, latest_score_id=score_id) for example_id, score_id in pairs.items()]
    Example.objects.bulk_update(examples, ["latest_score"], batch_size=1000)


SCORE_FIELDS = ("probs", "predicted", "confidence", "entropy", "margin", "label_quality", "is_issue", "suggested_label")


def _save_scores_copy(version: ModelVersion, scores: list[ExampleScore]) -> None:
    """PostgreSQL: COPY into a temporary table, then one upsert and one update (a chunk of 20,000 scores in
    three statements, where row-by-row parameters cost seconds)."""
    columns = ", ".join(SCORE_FIELDS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in SCORE_FIELDS)
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS score_in (example_id bigint PRIMARY KEY, probs jsonb, "
            "predicted jsonb, confidence double precision, entropy double precision, margin double precision, "
            "label_quality double precision, is_issue boolean, suggested_label varchar(100)) ON COMMIT DELETE ROWS")
        cursor.execute("TRUNCATE score_in")
        by_example = {score.example_id: score for score in scores}  # the last score of an example wins
        with cursor.cursor.copy(f"COPY score_in (example_id, {columns}) FROM STDIN") as copy:
            for score in by_example.values():
                copy.write_row((score.example_id, json.dumps(score.probs), json.dumps(score.predicted),
                                score.confidence, score.entropy, score.margin, score.label_quality, score.is_issue,
                                score.suggested_label or ""))
        cursor.execute(
            f"INSERT INTO annotator_examplescore (example_id, model_version_id, {columns}, created_at) "
            f"SELECT example_id, %s, {columns}, now() FROM score_in ORDER BY example_id "
            f"ON CONFLICT (example_id, model_version_id) DO UPDATE SET {updates}", [version.pk])
        cursor.execute(
            "UPDATE annotator_example AS e SET latest_score_id = s.id FROM score_in AS i "
            "JOIN annotator_examplescore AS s ON s.example_id = i.example_id AND s.model_version_id = %s "
            "WHERE e.id = i.example_id AND e.latest_score_id IS DISTINCT FROM s.id", [version.pk])


def noise_scores_save(version: ModelVersion, rows: list[dict[str, Any]]) -> None:
    """Labeled examples get out-of-sample probabilities plus cleanlab's label quality and issue flag."""
    multi = version.project.is_multi_label
    names = project_labels(version.project)
    if not rows:
        return
    probs = np.vstack([r["probs"] for r in rows])
    predicted = ([[names[j] for j in np.flatnonzero(p >= 0.5)] for p in probs] if multi
                 else [names[int(p.argmax())] for p in probs])
    scores = score_rows(version, [r["example_id"] for r in rows], probs, predicted, multi)
    for score, row in zip(scores, rows, strict=True):
        score.label_quality = row["label_quality"]
        score.is_issue = row["is_issue"]
        score.suggested_label = row["suggested"]
    save_scores(version, scores)



def start_scoring(train_job: Job, version: ModelVersion, reporter: JobReporter) -> None:
    """Split the unlabeled and production examples into chunks for the scoring workers."""
    ids = list(
        Example.objects.filter(project=version.project_id, label_source="").order_by("id").values_list("id", flat=True)
    )
    size = STORED_SCORE_CHUNK if _pool_is_stored(version, ids) else SCORE_CHUNK
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    score_job = job_create(project=train_job.project, kind=Job.Kind.SCORE, parent=train_job,
                           params={"model_version_id": version.id, "chunks": len(chunks), "examples": len(ids),
                                   "chunk_ids": chunks})
    Job.objects.filter(pk=score_job.pk).update(status=Job.Status.RUNNING, started_at=timezone.now(),
                                                heartbeat_at=timezone.now(), result={"done_chunks": 0, "scored": 0})
    reporter(0.78, "scoring", f"scoring {len(ids)} unlabeled and production examples in {len(chunks)} chunks",
             force=True)
    if not chunks:
        finish_scoring(score_job.pk)
        return
    for index, chunk in enumerate(chunks):
        dispatch.send_after_commit(dispatch.SCORE_CHUNK, score_job.pk, index, chunk)


def _pool_is_stored(version: ModelVersion, ids: list[int]) -> bool:
    """Whether (nearly) every pool example's vector is in the embedding cache for this version's encoder, by
    a sample: then a chunk costs a read and a matrix product, and larger chunks save task overhead."""
    from training.embedding_cache import text_key

    if not ids or version.mode != "frozen":
        return False
    step = max(1, len(ids) // STORED_PROBE)
    probe = list(Example.objects.filter(id__in=ids[::step][:STORED_PROBE]).values_list("text", flat=True))
    predictor = predictor_for(version)
    cache = embedding_cache()
    keys = [text_key(text) for text in probe]
    found = cache.get_many(predictor.embedding_key, keys)
    if predictor.embedding_key != predictor.encoder.fingerprint:
        found.update(cache.get_many(predictor.encoder.fingerprint, [k for k in keys if k not in found]))
    return len(found) >= 0.9 * len(keys)


def score_chunk(score_job_id: int, index: int, example_ids: list[int]) -> None:
    """Score one chunk (idempotent: rows are upserted) and count it; the last chunk starts the rebuild."""
    # A scoring job's params hold every chunk's ids (for the sweeper): megabytes at a million examples, so
    # each chunk reads the two numbers it needs and never loads them.
    score_job = Job.objects.defer("params").get(pk=score_job_id)
    version_id, total = Job.objects.filter(pk=score_job_id).values_list(
        "params__model_version_id", "params__chunks").get()
    if score_job.status in Job.FINISHED:
        return
    if score_job.cancel_requested:
        _cancel_scoring(score_job)
        return
    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    project = version.project
    rows = _texts_of(example_ids)
    predictor = predictor_for(version)
    prediction = _predict_pool(version, predictor, rows)
    scores = score_rows(version, [pk for pk, _ in rows], prediction.probs, prediction.labels,
                         project.is_multi_label)
    with transaction.atomic():
        save_scores(version, scores)
        # A frozen-mode version's vectors serve the next one with the same key (_predict_pool).
        pool_embeddings_save(version, index, [pk for pk, _ in rows], prediction.embeddings,
                             key=predictor.embedding_key if version.mode == "frozen" else None)
        job = Job.objects.select_for_update().defer("params").get(pk=score_job_id)
        done = set(job.result.get("done", []))
        done.add(index)
        total = int(total)
        job.result = {**job.result, "done": sorted(done), "done_chunks": len(done)}
        job.progress = len(done) / max(total, 1)
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["result", "progress", "heartbeat_at"])
        Job.objects.filter(pk=job.parent_id).update(
            progress=0.78 + 0.17 * job.progress, stage="scoring",
            message=f"scored {len(done)} of {total} chunks",
        )
        last = len(done) == total
    if last:
        finish_scoring(score_job_id)


def _predict_pool(version: ModelVersion, predictor: Any, rows: list[tuple[int, str]]) -> Any:
    """A chunk's predictions. A frozen-mode version reads stored vectors (the pool is embedded once, ever):
    first by id from the newest earlier version whose scoring saved vectors under the same key (memory-mapped
    files, no text hashing), then from the embedding cache; only the rest go through the model, and are kept.
    A fine-tuned version's vectors are its own: kept, they would only fill the cache."""
    texts = [text for _, text in rows]
    if version.mode != "frozen":
        return predictor.predict(texts, with_token_stats=False)
    cache = embedding_cache()
    prior = _prior_with_key(version, predictor.embedding_key)
    if prior is None:
        return predictor.predict(texts, with_token_stats=False, cache=cache)
    found, stored = pool_embedding_rows(prior, [pk for pk, _ in rows])
    embeddings = np.zeros((len(rows), predictor.encoder.hidden_size), dtype=np.float32)
    if stored is not None:
        embeddings[found] = stored[found]
    missing = np.flatnonzero(~found)
    if missing.size:
        embeddings[missing] = predictor.embed([texts[i] for i in missing], cache=cache)
    return predictor.predict_embeddings(embeddings)


def _prior_with_key(version: ModelVersion, key: str) -> ModelVersion | None:
    """The newest earlier ready version of the project whose pool vectors were saved under ``key``."""
    earlier = (ModelVersion.objects.filter(project_id=version.project_id, number__lt=version.number,
                                           status=ModelVersion.Status.READY).order_by("-number")[:5])
    return next((v for v in earlier if pool_embeddings_key(v) == key), None)


def _texts_of(example_ids: list[int]) -> list[tuple[int, str]]:
    """(id, text) of the examples in id order; on PostgreSQL one array parameter, not 20,000 placeholders."""
    if not is_postgres():
        return list(Example.objects.filter(id__in=example_ids).order_by("id").values_list("id", "text"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, text FROM annotator_example WHERE id = ANY(%s) ORDER BY id", [list(example_ids)])
        return cursor.fetchall()


def _cancel_scoring(score_job: Job) -> None:
    """A cancel that arrives while scoring ends the scoring job and its train job: returning quietly would
    leave the train job running for ever, and that blocks every later training of the project."""
    job_finish(score_job.pk, Job.Status.CANCELLED, message="cancelled")
    if score_job.parent_id:
        job_finish(score_job.parent_id, Job.Status.CANCELLED,
                   message="cancelled while scoring: the new version was stored but not promoted (promote it by "
                           "hand on the models page); scores are partial and the queue was not rebuilt")



def finish_scoring(score_job_id: int) -> None:
    """Every chunk is scored: decide promotion (only now, so a scoring failure never leaves the new version
    serving), record it in the train job's result, then send the queue rebuild.

    Called by whichever delivery saved the last chunk, and by the sweeper: two deliveries of the last chunk
    at once both see every chunk done. Only the call that moves the scoring job to succeeded goes on, so the
    promotion is decided and the rebuild sent once."""
    job = job_finish_first(score_job_id, Job.Status.SUCCEEDED, message="scored")
    if job is None:
        log.info("scoring job %s was already finished; this call does nothing", score_job_id)
        return
    conclude_scoring(job)


def conclude_scoring(job: Job) -> None:
    """What follows a finished scoring job: the pool drift reference, the promotion decision (recorded in the
    train job's result), then the queue rebuild. ``finish_scoring`` runs it once; the sweeper runs it again
    when a worker died between finishing the scoring job and recording the decision (the decision, the
    reference and the rebuild are all idempotent)."""
    version = ModelVersion.objects.select_related("project").get(pk=job.params["model_version_id"])
    # The drift reference of what production should look like: the pool this version just scored (saved
    # before promotion, so a promoted version always has it).
    try:
        drift_reference_update(version=version)
    except Exception:  # noqa: BLE001 - the labeled split stays the reference; never block promotion
        log.exception("v%s: the pool drift reference failed; drift keeps the labeled split", version.number)
    decision = decide_promotion(version)
    with transaction.atomic():
        train_job = Job.objects.select_for_update().get(pk=job.parent_id)
        promoted = Project.objects.filter(pk=version.project_id, serving_version=version).exists()
        train_job.result = {**train_job.result, "promoted": promoted, "promotion": decision["decision"]}
        train_job.heartbeat_at = timezone.now()
        train_job.save(update_fields=["result", "heartbeat_at"])
    dispatch.send_after_commit(dispatch.REBUILD_QUEUE, job.parent_id)

