"""Production traffic: predictions, pushed samples, drift windows and routing drifted samples to the queue."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction

from annotator import dispatch, metrics
from annotator.errors import Conflict, InvalidInput
from annotator.models import DriftWindow, Example, ModelVersion, Project, QueueItem, Source
from annotator.selectors.projects import project_labels
from annotator.services.drift_reference import ChosenReference, drift_baseline_save, drift_reference_for
from annotator.services.embeddings import embedding_cache
from annotator.services.examples import examples_import
from annotator.services.jsonable import jsonable
from annotator.services.queue import queue_add_many
from annotator.services.scoring import save_scores, score_rows
from annotator.services.webhooks import drift_alert_event
from annotator.serving import predictor_for
from annotator.text import unicode_problem

log = logging.getLogger(__name__)

MAX_PREDICT_TEXTS = 256
MAX_SAMPLES = 1000
SAMPLE_KEYS = {"text", "external_id", "metadata", "observed_at"}
# Share of an alerting window's samples routed to the queue (the most uncertain first).
DRIFT_ROUTE_SHARE = 0.2


def serving_version(project: Project) -> ModelVersion | None:
    version = project.serving_version
    if version is None or version.status != ModelVersion.Status.READY:
        return None
    return version


def _predictions_out(prediction: Any, names: list[str], multi: bool) -> list[dict[str, Any]]:
    from training.query import confidence_scores

    confidence = confidence_scores(prediction.probs, multi_label=multi)
    out = []
    for i, probs in enumerate(prediction.probs):
        row: dict[str, Any] = {"probs": {name: round(float(p), 6) for name, p in zip(names, probs, strict=True)}}
        if multi:
            row["labels"] = list(prediction.labels[i])
            row["label"] = None
        else:
            row["label"] = prediction.labels[i]
            row["labels"] = [prediction.labels[i]]
        row["confidence"] = round(float(confidence[i]), 6)
        out.append(row)
    return out


def predict_texts(*, project: Project, texts: Any) -> tuple[ModelVersion, list[dict[str, Any]]]:
    if not isinstance(texts, list) or not texts:
        raise InvalidInput([{"field": "texts", "message": "texts must be a non-empty list of strings"}])
    if len(texts) > MAX_PREDICT_TEXTS:
        raise InvalidInput([{"field": "texts", "message": f"at most {MAX_PREDICT_TEXTS} texts per request"}])
    limit = int(project.setting("max_text_chars"))
    errors = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            errors.append({"index": i, "field": "texts", "message": "each text must be a non-empty string"})
        elif len(text) > limit:
            errors.append({"index": i, "field": "texts", "message": f"text over {limit:,} characters"})
        elif problem := unicode_problem(text):
            errors.append({"index": i, "field": "texts", "message": f"text {problem}"})
    if errors:
        raise InvalidInput(errors)
    version = serving_version(project)
    if version is None:
        raise Conflict("no model version is promoted yet; train one first (POST /projects/{id}/train/)")
    prediction = predictor_for(version).predict(texts, with_token_stats=False)
    return version, _predictions_out(prediction, project_labels(project), project.is_multi_label)


def samples_push(*, project: Project, user: AbstractBaseUser, rows: Any) -> dict[str, Any]:
    """Store production samples (idempotent on external_id), predict with the serving version, score them,
    and check drift in the background."""
    if isinstance(rows, list):
        if len(rows) > MAX_SAMPLES:
            raise InvalidInput(f"{len(rows)} samples in one request; at most {MAX_SAMPLES:,}")
        bad = [
            {"index": i, "field": sorted(set(row) - SAMPLE_KEYS)[0],
             "message": f"samples take only {', '.join(sorted(SAMPLE_KEYS))}; labeled data goes to examples/"}
            for i, row in enumerate(rows) if isinstance(row, dict) and set(row) - SAMPLE_KEYS
        ]
        if bad:
            raise InvalidInput(bad)
    version = serving_version(project)
    # Loaded first: a version whose files fail their integrity check answers 503 before anything is stored.
    predictor = predictor_for(version) if version is not None else None
    # The import commits on its own, before inference: it locks the project row (example counter), and
    # holding that lock through a forward pass would queue every concurrent push behind this one. A push
    # is idempotent on external_id (or the text's hash), so a client that retries after a failed
    # prediction stores nothing twice.
    with transaction.atomic():
        # With a version serving, the push embeds its samples as it predicts them (below).
        result = examples_import(project=project, user=user, rows=rows, default_source=Source.PRODUCTION,
                                 max_rows=MAX_SAMPLES, embed=version is None)
        dispatch.send_after_commit(dispatch.CHECK_DRIFT, project.id)
    metrics.SAMPLES_PUSHED.inc(len(result.ids))
    predictions = None
    if version is not None:
        ids = result.ids
        texts = dict(Example.objects.filter(id__in=ids).values_list("id", "text"))
        # The vectors are kept: the drift check reads them instead of predicting the samples again.
        prediction = predictor.predict([texts[i] for i in ids], with_token_stats=False, cache=embedding_cache())
        predictions = _predictions_out(prediction, project_labels(project), project.is_multi_label)
        unique = dict(zip(ids, range(len(ids)), strict=True))  # last row of each id
        keep = sorted(unique.values())
        scores = score_rows(version, [ids[i] for i in keep], prediction.probs[keep],
                            [prediction.labels[i] for i in keep], project.is_multi_label)
        with transaction.atomic():
            save_scores(version, scores)
    return {"ids": result.ids, "created": result.created, "unchanged": result.unchanged,
            "model_version": version.number if version else None, "predictions": predictions}


_DRIFT_LOCK_SPACE = 0x64726966  # "drif": the advisory-lock namespace of drift checks


@contextmanager
def _one_drift_check_at_a_time(project_id: int) -> Iterator[None]:
    """Serialise the project's drift checks across workers: on PostgreSQL a session-level advisory lock,
    held while no transaction is open (the check predicts whole windows between its short writes) and
    released when the check ends, or with the connection if the worker dies. SQLite has no such lock; there
    each window's write transaction re-checks what is already measured (:func:`_window_save`), so two checks
    at once may measure a window twice but record it once."""
    if connection.vendor != "postgresql":
        yield
        return
    # The two-key form takes 32-bit keys; ids past that share a lock, which only serialises more.
    keys = [_DRIFT_LOCK_SPACE, project_id % 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", keys)
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
        except DatabaseError:
            log.warning("drift lock of project %s not released; closing the connection releases it", project_id,
                        exc_info=True)
            if not connection.in_atomic_block:
                connection.close()


def drift_check(project_id: int) -> list[DriftWindow]:
    """Cut every full window of production samples not yet windowed and measure its drift against the
    serving version's reference (``services.drift_reference``: the scored pool by default, or a production
    baseline), recording in each window which reference that was.

    Inference runs outside any transaction and each window is written in a short one of its own: on the
    embedded SQLite default a transaction holds the database's only write lock, and holding it through up to
    20 windows of inference made concurrent pushes and annotations fail with "database is locked"."""
    with _one_drift_check_at_a_time(project_id):
        return _drift_check(project_id)


def _drift_check(project_id: int) -> list[DriftWindow]:
    from training.drift import drift_window

    created: list[DriftWindow] = []
    project = Project.objects.get(pk=project_id)
    version = serving_version(project)
    if version is None:
        return created
    size = int(project.setting("drift_window_size"))
    last = project.drift_windows.order_by("-sequence").first()
    after = last.last_example_id if last else 0
    sequence = last.sequence + 1 if last else 0
    pending = list(
        Example.objects.filter(project=project, source=Source.PRODUCTION, id__gt=after)
        .order_by("id").values_list("id", "text", "observed_at")[: size * 20]
    )
    if len(pending) < size:
        return created
    chosen = drift_reference_for(version=version)
    predictor = predictor_for(version)
    for start in range(0, len(pending) - size + 1, size):
        window = pending[start:start + size]
        texts = [text for _, text, _ in window]
        prediction = predictor.predict(texts, cache=embedding_cache())  # pushed samples: stored vectors
        result = drift_window(chosen.reference, probs=prediction.probs, embeddings=prediction.embeddings,
                              token_stats=prediction.token_stats, texts=texts)
        saved = _window_save(project, version, sequence, window, prediction, result, chosen,
                             label_names=list(predictor.label_names))
        if saved is None:
            break  # another check measured this window first; it measures the rest too
        row, chosen = saved
        created.append(row)
        sequence += 1
    return created


def _window_save(project: Project, version: ModelVersion, sequence: int, window: list[tuple[Any, ...]],
                 prediction: Any, result: Any, chosen: ChosenReference,
                 *, label_names: list[str]) -> tuple[DriftWindow, ChosenReference] | None:
    """Record one measured window as number ``sequence`` (with its baseline and routed samples) in one short
    transaction; None, writing nothing, when the newest window is no longer number ``sequence - 1``: a
    concurrent or repeated check measured it already."""
    with transaction.atomic():
        newest = project.drift_windows.order_by("-sequence").values_list("sequence", flat=True).first()
        if (newest if newest is not None else -1) != sequence - 1:
            return None
        compared_with = chosen.record
        if chosen.becomes_baseline:
            chosen = drift_baseline_save(
                version=version, sequence=sequence, label_names=label_names, probs=prediction.probs,
                embeddings=prediction.embeddings, token_stats=prediction.token_stats,
                texts=[text for _, text, _ in window])
        times = [t for _, _, t in window if t is not None]
        actions = []
        if result.alert:
            actions = _route_drifted(project, version, [pk for pk, _, _ in window], prediction.probs, result)
        summary = result.to_dict()
        row = DriftWindow.objects.create(
            project=project, model_version=version, sequence=sequence,
            first_example_id=window[0][0], last_example_id=window[-1][0],
            start=min(times) if times else None, end=max(times) if times else None, n=len(window),
            class_distribution=summary["class_distribution"],
            class_shift=(summary["class_shift"] or {}).get("js_distance"),
            mean_confidence=summary["mean_confidence"],
            confidence_shift=(summary["confidence_shift"] or {}).get("ks_statistic"),
            embedding_drift=(summary["embedding_drift"] or {}).get("mmd2"),
            anomalies=summary["anomalies"], details=jsonable({**summary, "reference": compared_with}),
            alert=result.alert,
            reasons=result.reasons, actions=actions,
        )
        drift_alert_event(row, version)
    if row.alert:
        metrics.DRIFT_ALERTS.inc()
    return row, chosen


def _route_drifted(project: Project, version: ModelVersion, ids: list[int], probs: np.ndarray,
                   result: Any) -> list[str]:
    """Send the window's most uncertain samples to the queue with reason ``drift``."""
    from training.query import entropy_scores, multilabel_uncertainty_scores

    # Higher is less sure, for both tasks: normalised entropy, or the mean binary entropy of the sigmoids.
    uncertainty = multilabel_uncertainty_scores(probs) if project.is_multi_label else entropy_scores(probs)
    n = max(1, int(round(len(ids) * DRIFT_ROUTE_SHARE)))
    order = np.argsort(-uncertainty, kind="stable")[:n]
    reason = "; ".join(result.reasons)[:200]
    created = queue_add_many(
        project=project, reason=QueueItem.Reason.DRIFT, model_version_id=version.id,
        items=[(ids[int(i)], 1.5 + float(uncertainty[i]), f"drift alert: {reason}") for i in order])
    return [f"routed {created} of the window's {len(ids)} samples to the queue (reason drift)"]
