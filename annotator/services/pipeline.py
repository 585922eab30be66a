"""The loop's jobs: train a version, score the pool in chunks, rebuild the queue.

A train job runs these stages, writing progress to its job row:

    snapshot -> split -> train (training.train) -> calibrate -> evaluate -> out-of-sample probabilities
    -> label noise (cleanlab) -> artifact + drift reference -> ModelVersion -> promotion decision
    -> score chunks (scoring queue, several workers) -> queue rebuild (services.queue_policy) -> job succeeded

A failure anywhere leaves the serving version and every label untouched: the version row is marked
failed, the partial artifact directory is never referenced.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotator.models import (
    Annotation,
    Example,
    ExampleLabel,
    ExampleScore,
    Job,
    ModelVersion,
    Project,
)
from annotator.selectors import project_labels
from annotator.services.jobs import JobReporter, job_create, job_finish, send_after_commit
from annotator.serving import artifact_root, predictor_for, version_dir

log = logging.getLogger(__name__)

# Examples per scoring task: the unit of work a killed worker loses and another worker takes over.
SCORE_CHUNK = int(os.environ.get("SCORE_CHUNK_SIZE", 1000))
MIN_PER_CLASS = 2
PROMOTION_TOLERANCE = 0.0  # a new version may not lose any macro-F1 to the serving one
MIN_VAL_FOR_BACKEND_CHOICE = 50


class TrainingInputError(Exception):
    """The project cannot be trained as it is (too few labels); a terminal, not a retryable, error."""


class ArtifactWriteError(Exception):
    """A version's files could not be written (ARTIFACT_DIR full, read-only or gone)."""


@contextmanager
def _writing_files_of(version: ModelVersion, directory: Path) -> Iterator[None]:
    """Name the place and the way out when the disk refuses a write (safetensors' own error says neither)."""
    try:
        yield
    except Exception as error:
        raise ArtifactWriteError(
            f"could not write the files of version {version.number} to {directory}: {error}. Check that "
            "ARTIFACT_DIR has free space and is writable; the serving version is unchanged") from error


@dataclass
class Snapshot:
    example_ids: list[int]
    texts: list[str]
    labels: list[Any]  # name (single) or list of names (multi)
    sources: list[str]
    max_annotation_id: int


def take_snapshot(project: Project) -> Snapshot:
    names = project_labels(project)
    current: dict[int, list[str]] = {}
    for example_id, name in (
        ExampleLabel.objects.filter(example__project=project).order_by("example_id", "label__position")
        .values_list("example_id", "label__name")
    ):
        current.setdefault(example_id, []).append(name)
    rows = Example.objects.filter(id__in=list(current)).order_by("id").values_list("id", "text", "source")
    ids, texts, labels, sources = [], [], [], []
    for example_id, text, source in rows:
        ids.append(example_id)
        texts.append(text)
        labels.append(current[example_id] if project.is_multi_label else current[example_id][0])
        sources.append(source)
    max_id = Annotation.objects.filter(example__project=project).aggregate(m=Max("id"))["m"] or 0
    if not project.is_multi_label:
        counts = {name: labels.count(name) for name in names}
        present = [n for n, c in counts.items() if c >= MIN_PER_CLASS]
        if len(present) < 2:
            raise TrainingInputError(
                f"training needs at least {MIN_PER_CLASS} labeled examples in at least two classes; "
                f"labels so far: {counts}"
            )
    elif len(ids) < 4:
        raise TrainingInputError("training needs at least 4 labeled examples")
    return Snapshot(ids, texts, labels, sources, max_id)


def _split(snapshot: Snapshot, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified validation split: 15% of every class with at least two examples (at least one each).
    Labeled production examples land in it in proportion, and the shadow comparison uses them."""
    from training.data import stratified_split

    train_idx, val_idx = stratified_split(snapshot.labels, 0.15, seed=seed)
    return np.asarray(train_idx), np.asarray(val_idx)


def _encoder_config(project: Project):  # noqa: ANN202
    from training.encoder import EncoderConfig

    return EncoderConfig(max_length=int(project.setting("max_length")))


def _embedding_cache():  # noqa: ANN202
    from training.encoder import EmbeddingCache

    path = Path(settings.EMBEDDING_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return EmbeddingCache(path / "embeddings.sqlite3")


def run_training(job: Job, reporter: JobReporter) -> None:
    """Train, evaluate, find noise, store the version; then hand over to scoring."""
    project = job.project
    names = project_labels(project)
    multi = project.is_multi_label
    task = project.task
    params = job.params
    reporter(0.01, "snapshot", "taking a snapshot of the current labels", force=True)
    snapshot = take_snapshot(project)
    n = len(snapshot.texts)
    production_share = sum(1 for s in snapshot.sources if s == "production") / n
    reporter(0.015, "loading", "loading the ML libraries", force=True)
    from training.artifacts import Predictor, load_artifact, save_artifact
    from training.calibration import calibration_report
    from training.drift import build_drift_reference
    from training.encoder import Encoder
    from training.heads import probabilities
    from training.metrics import evaluate
    from training.serving import choose_serving_backend
    from training.train import TrainConfig, train_classifier, train_seeds

    reporter(0.02, "split", f"{n} labeled examples; {production_share:.0%} from production", force=True)
    train_idx, val_idx = _split(snapshot, seed=0)
    pick = lambda values, idx: [values[i] for i in idx]  # noqa: E731
    train_texts, val_texts = pick(snapshot.texts, train_idx), pick(snapshot.texts, val_idx)
    train_labels, val_labels = pick(snapshot.labels, train_idx), pick(snapshot.labels, val_idx)
    val_sources = np.array(pick(snapshot.sources, val_idx))

    # A redelivered job (its worker died) leaves a half-made version behind: it never becomes ready.
    ModelVersion.objects.filter(job=job, status=ModelVersion.Status.TRAINING).update(
        status=ModelVersion.Status.FAILED, finished_at=timezone.now())
    version = _new_version(project, job, snapshot)
    cache = _embedding_cache()
    config = TrainConfig(mode=params.get("mode", "auto"), encoder=_encoder_config(project), seed=0,
                         device=settings.TRAINING_DEVICE)
    mode = config.resolve_mode(n)
    ModelVersion.objects.filter(pk=version.pk).update(mode=mode)
    try:
        seeds_result = None
        if int(params.get("seeds", 1)) > 1:
            reporter(0.04, "seeds", f"training {params['seeds']} seeds for mean and spread")
            seeds_result = train_seeds(
                train_texts, train_labels, names, seeds=list(range(int(params["seeds"]))), task=task,
                config=config, val_texts=val_texts, val_labels=val_labels, cache=cache,
                should_cancel=reporter.should_cancel,
            ).to_dict()
        model = train_classifier(
            train_texts, train_labels, names, task=task, config=config, val_texts=val_texts, val_labels=val_labels,
            progress=reporter.span(0.05, 0.55), should_cancel=reporter.should_cancel, cache=cache,
        )
        reporter.check()

        # Calibration on validation data, then metrics of the calibrated model.
        reporter(0.56, "calibrating", "temperature scaling on the validation split", force=True)
        val_embeddings = model.embed(val_texts)  # one pass serves calibration, metrics and the reference
        val_logits = model.logits_from_embeddings(val_embeddings)
        y_val = _label_matrix(val_labels, names, multi)
        calibration = calibration_report(val_logits, y_val, multi_label=multi)
        model.temperature = float(calibration.temperature)
        val_probs = probabilities(val_logits, task, model.temperature)
        slices = {f"source={s}": val_sources == s for s in sorted(set(val_sources))}
        metrics = evaluate(y_val, _decisions(val_probs, model, multi), names, probs=val_probs, slices=slices,
                           multi_label=multi)
        metrics.update({
            "ece": calibration.ece_after, "ece_before": calibration.ece_before,
            "temperature": calibration.temperature, "calibration": calibration.to_dict(),
            "n_train": len(train_texts), "n_val": len(val_texts), "mode": mode,
            "production_share": production_share, "seeds": seeds_result,
        })
        if seeds_result:
            metrics["macro_f1_mean"] = seeds_result.get("mean")
            metrics["macro_f1_std"] = seeds_result.get("std")

        # Out-of-sample probabilities for every labeled example (frozen base embeddings, K folds), cleanlab.
        reporter(0.6, "noise", "out-of-sample probabilities and label noise (cleanlab)", force=True)
        base = Encoder(_encoder_config(project))
        base_embeddings = base.embed_cached(snapshot.texts, cache)
        noise_metrics, noise_rows = _label_noise(snapshot, base_embeddings, names, multi)
        metrics["noise"] = noise_metrics
        reporter.check()

        # Serving backend and artifact.
        reporter(0.7, "saving", "choosing the CPU serving backend and writing the artifact", force=True)
        serving = None
        # Too few validation texts cannot show that INT8 or ONNX keeps accuracy: serve fp32 then.
        if len(val_texts) >= MIN_VAL_FOR_BACKEND_CHOICE:
            serving = choose_serving_backend(Predictor.from_trained(model), val_texts, val_labels, tolerance=0.01)
            metrics["serving"] = serving
        directory = version_dir(version)
        with _writing_files_of(version, directory):
            if directory.exists():  # a retried job's leftovers: never referenced by a ready version
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            content_hash = save_artifact(model, directory / "model", metrics=jsonable(metrics),
                                         extra={"snapshot": _snapshot_record(snapshot)}, serving=serving)
        # The drift reference must look like what serving will produce: the chosen backend's embeddings.
        backend = (serving or {}).get("backend", "torch_fp32")
        if backend == "torch_fp32":
            reference_probs, reference_embeddings = val_probs, val_embeddings
        else:
            served = load_artifact(directory / "model").predict(val_texts, with_token_stats=False)
            reference_probs, reference_embeddings = served.probs, served.embeddings
        reference = build_drift_reference(
            probs=reference_probs, label_names=names, embeddings=reference_embeddings,
            token_stats=model.encoder.token_stats(val_texts), texts=val_texts, multi_label=multi,
        )
        with _writing_files_of(version, directory):
            reference.save(directory / "drift-reference")

        with transaction.atomic():
            if not multi:
                # Items several people answered: CROWDLAB consensus and each annotator's quality, from the same
                # out-of-sample probabilities; labels change only as the version becomes ready.
                from annotator.services.consensus import consensus_update

                metrics["consensus"] = consensus_update(
                    project=project, example_ids=[row["example_id"] for row in noise_rows],
                    probs=np.vstack([row["probs"] for row in noise_rows]), names=names,
                    max_annotation_id=snapshot.max_annotation_id)
            ModelVersion.objects.filter(pk=version.pk).update(
                status=ModelVersion.Status.READY, artifact_path=str((directory / "model").relative_to(artifact_root())),
                content_hash=content_hash, metrics=jsonable(metrics), n_train=len(train_texts),
                config=jsonable(config.to_dict()), finished_at=timezone.now(),
            )
            version.refresh_from_db()
            _write_noise_scores(version, noise_rows)
    except BaseException:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED, finished_at=timezone.now())
        # A failed version's files are never served; on a full disk they would also keep it full.
        shutil.rmtree(version_dir(version), ignore_errors=True)
        raise

    reporter(0.75, "promotion", "comparing with the serving version", force=True)
    promoted = decide_promotion(version, val_texts, val_labels, val_sources)
    job.result = {"model_version": version.number, "model_version_id": version.id, "promoted": promoted,
                  "macro_f1": metrics.get("macro_f1"), "mode": mode, "n_train": len(train_texts),
                  "production_share": production_share, "issues": noise_metrics.get("n_issues")}
    Job.objects.filter(pk=job.pk).update(result=job.result)
    reporter.close()
    start_scoring(job, version, reporter)


def _new_version(project: Project, job: Job, snapshot: Snapshot) -> ModelVersion:
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        number = (ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
        return ModelVersion.objects.create(
            project=project, number=number, job=job, n_train=len(snapshot.texts),
            snapshot=_snapshot_record(snapshot),
        )


def _snapshot_record(snapshot: Snapshot) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for labels in snapshot.labels:
        for name in labels if isinstance(labels, list) else [labels]:
            counts[name] = counts.get(name, 0) + 1
    sources: dict[str, int] = {}
    for source in snapshot.sources:
        sources[source] = sources.get(source, 0) + 1
    return {"max_annotation_id": snapshot.max_annotation_id, "n_labeled": len(snapshot.texts),
            "per_label": counts, "per_source": sources}


def _label_matrix(labels: list[Any], names: list[str], multi: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    if not multi:
        return np.array([index[label] for label in labels], dtype=np.int64)
    matrix = np.zeros((len(labels), len(names)), dtype=np.int64)
    for row, values in enumerate(labels):
        for name in values:
            matrix[row, index[name]] = 1
    return matrix


def _decisions(probs: np.ndarray, model: Any, multi: bool) -> np.ndarray:
    if not multi:
        return probs.argmax(axis=1)
    thresholds = np.asarray(model.thresholds if model.thresholds is not None else [0.5] * probs.shape[1])
    return (probs >= thresholds).astype(np.int64)


def _label_noise(snapshot: Snapshot, embeddings: np.ndarray, names: list[str],
                 multi: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """cleanlab over K-fold out-of-sample probabilities; one row per labeled example."""
    if multi:
        from training.cv import oos_probs_frozen_multilabel
        from training.noise import find_noise_multilabel

        y = _label_matrix(snapshot.labels, names, True)
        label_lists = [list(np.flatnonzero(row)) for row in y]
        probs = oos_probs_frozen_multilabel(embeddings, y, len(names))
        report = find_noise_multilabel(label_lists, probs, names)
        suggested = [",".join(names[j] for j in np.flatnonzero(p >= 0.5)) for p in probs]
    else:
        from training.cv import ensemble_probs, oos_probs_frozen, oos_probs_knn
        from training.noise import find_noise

        y = _label_matrix(snapshot.labels, names, False)
        # Logistic regression with C chosen by cross-validation, averaged with leave-one-out kNN: the
        # combination found the most planted flips in bench/noise.py.
        probs = ensemble_probs([oos_probs_frozen(embeddings, y, len(names), C="auto"),
                                oos_probs_knn(embeddings, y, len(names))])
        report = find_noise(y, probs, names)
        suggested = [names[int(i)] for i in report.suggested_label]
    summary = report.to_dict()
    metrics = {
        "estimated_noise_rate": summary.get("estimated_noise_rate"),
        "per_class": summary.get("per_class", []),
        "n_issues": int(np.asarray(report.is_issue).sum()),
        "n": len(snapshot.texts),
        "method": summary.get("method"),
        "notes": summary.get("notes", []),
    }
    rows = [
        {"example_id": example_id, "probs": probs[i], "label_quality": float(report.label_quality[i]),
         "is_issue": bool(report.is_issue[i]), "suggested": suggested[i]}
        for i, example_id in enumerate(snapshot.example_ids)
    ]
    return metrics, rows


def _uncertainty(probs: np.ndarray, multi: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, normalised entropy, margin (best minus second best) per row."""
    from training.query import entropy_scores, multilabel_uncertainty_scores

    if multi:
        confidence = np.abs(probs - 0.5).mean(axis=1) * 2
        entropy = multilabel_uncertainty_scores(probs)
        margin = np.abs(probs - 0.5).min(axis=1) * 2
        return confidence, entropy, margin
    ordered = np.sort(probs, axis=1)
    confidence = ordered[:, -1]
    margin = ordered[:, -1] - (ordered[:, -2] if probs.shape[1] > 1 else 0.0)
    return confidence, entropy_scores(probs), margin


def score_rows(version: ModelVersion, example_ids: list[int], probs: np.ndarray, predicted: list[Any],
                multi: bool) -> list[ExampleScore]:
    confidence, entropy, margin = _uncertainty(probs, multi)
    return [
        ExampleScore(
            example_id=example_id, model_version=version, probs=[round(float(p), 6) for p in probs[i]],
            predicted=predicted[i] if multi else [predicted[i]], confidence=float(confidence[i]),
            entropy=float(entropy[i]), margin=float(margin[i]),
        )
        for i, example_id in enumerate(example_ids)
    ]


def save_scores(version: ModelVersion, scores: list[ExampleScore]) -> None:
    ExampleScore.objects.bulk_create(
        scores, batch_size=1000, update_conflicts=True, unique_fields=["example", "model_version"],
        update_fields=["probs", "predicted", "confidence", "entropy", "margin", "label_quality", "is_issue",
                       "suggested_label"],
    )
    ids = [s.example_id for s in scores]
    pairs = dict(ExampleScore.objects.filter(model_version=version, example_id__in=ids).values_list("example_id", "id"))
    examples = [Example(id=example_id, latest_score_id=score_id) for example_id, score_id in pairs.items()]
    Example.objects.bulk_update(examples, ["latest_score"], batch_size=1000)


def _write_noise_scores(version: ModelVersion, rows: list[dict[str, Any]]) -> None:
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


def decide_promotion(version: ModelVersion, val_texts: list[str], val_labels: list[Any],
                     val_sources: np.ndarray) -> bool:
    """Promote the first version; later ones only when they do not lose to the serving one on the labeled
    production examples of the validation split (or the whole split when it has none)."""
    from training.metrics import evaluate

    project = Project.objects.get(pk=version.project_id)
    serving = project.serving_version
    names = project_labels(project)
    multi = project.is_multi_label
    if serving is None or serving.status != ModelVersion.Status.READY:
        from annotator.services.models import model_promote

        model_promote(version=version, reason="first version")
        return True
    production = val_sources == "production"
    mask = production if production.sum() >= 5 else np.ones(len(val_texts), dtype=bool)
    texts = [t for t, keep in zip(val_texts, mask, strict=True) if keep]
    y = _label_matrix([lab for lab, keep in zip(val_labels, mask, strict=True) if keep], names, multi)
    results = {}
    for name, candidate in (("candidate", version), ("serving", serving)):
        try:
            prediction = predictor_for(candidate).predict(texts, with_token_stats=False)
        except Exception as error:  # noqa: BLE001 - a broken serving artifact must not block a new version
            log.warning("shadow comparison: %s version failed to predict: %s", name, error)
            results[name] = None
            continue
        pred = prediction.predicted.astype(np.int64)
        results[name] = evaluate(y, pred, names, multi_label=multi)["macro_f1"]
    candidate_f1, serving_f1 = results["candidate"], results["serving"]
    promote = serving_f1 is None or (candidate_f1 is not None and candidate_f1 >= serving_f1 - PROMOTION_TOLERANCE)
    comparison = {"against_version": serving.number, "on": "production" if mask is production else "validation",
                  "n": int(mask.sum()), "candidate_macro_f1": candidate_f1, "serving_macro_f1": serving_f1,
                  "promoted": promote}
    ModelVersion.objects.filter(pk=version.pk).update(comparison=comparison)
    if promote:
        from annotator.services.models import model_promote

        version.refresh_from_db()
        model_promote(version=version, reason="won the shadow comparison")
    return promote


# --- scoring ----------------------------------------------------------------------------------------------
def start_scoring(train_job: Job, version: ModelVersion, reporter: JobReporter) -> None:
    """Split the unlabeled and production examples into chunks for the scoring workers."""
    from annotator import tasks

    ids = list(
        Example.objects.filter(project=version.project_id, label_source="").order_by("id").values_list("id", flat=True)
    )
    chunks = [ids[i:i + SCORE_CHUNK] for i in range(0, len(ids), SCORE_CHUNK)]
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
        send_after_commit(tasks.score_chunk, score_job.pk, index, chunk)


def score_chunk(score_job_id: int, index: int, example_ids: list[int]) -> None:
    """Score one chunk (idempotent: rows are upserted) and count it; the last chunk starts the rebuild."""
    score_job = Job.objects.select_related("project").get(pk=score_job_id)
    if score_job.status in Job.FINISHED:
        return
    if score_job.cancel_requested:
        _cancel_scoring(score_job)
        return
    version = ModelVersion.objects.select_related("project").get(pk=score_job.params["model_version_id"])
    project = version.project
    rows = list(Example.objects.filter(id__in=example_ids).order_by("id").values_list("id", "text"))
    predictor = predictor_for(version)
    prediction = predictor.predict([text for _, text in rows], with_token_stats=False)
    scores = score_rows(version, [pk for pk, _ in rows], prediction.probs, prediction.labels,
                         project.is_multi_label)
    with transaction.atomic():
        save_scores(version, scores)
        _save_embeddings(version, index, [pk for pk, _ in rows], prediction.embeddings)
        job = Job.objects.select_for_update().get(pk=score_job_id)
        done = set(job.result.get("done", []))
        done.add(index)
        total = int(job.params["chunks"])
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


def _cancel_scoring(score_job: Job) -> None:
    """A cancel that arrives while scoring ends the scoring job and its train job: returning quietly would
    leave the train job running for ever, and that blocks every later training of the project."""
    job_finish(score_job.pk, Job.Status.CANCELLED, message="cancelled")
    if score_job.parent_id:
        job_finish(score_job.parent_id, Job.Status.CANCELLED,
                   message="cancelled while scoring: the new version was already stored (see the models page "
                           "for whether it serves); scores are partial and the queue was not rebuilt")


def _save_embeddings(version: ModelVersion, index: int, ids: list[int], embeddings: np.ndarray) -> None:
    directory = version_dir(version) / "pool-embeddings"
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"chunk-{index:05d}.npz", ids=np.asarray(ids, dtype=np.int64),
             embeddings=embeddings.astype(np.float16))


def load_pool_embeddings(version: ModelVersion) -> dict[int, np.ndarray]:
    directory = version_dir(version) / "pool-embeddings"
    out: dict[int, np.ndarray] = {}
    for path in sorted(directory.glob("chunk-*.npz")):
        with np.load(path) as data:
            out.update(zip(data["ids"].tolist(), data["embeddings"], strict=True))
    return out


def finish_scoring(score_job_id: int) -> None:
    from annotator import tasks

    job = job_finish(score_job_id, Job.Status.SUCCEEDED, message="scored")
    Job.objects.filter(pk=job.parent_id).update(heartbeat_at=timezone.now())
    send_after_commit(tasks.rebuild_queue, job.parent_id)


def jsonable(value: Any) -> Any:
    """Plain JSON for a JSONField: numpy scalars and arrays converted, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value
