"""The loop's jobs: train a version, score the pool in chunks, decide promotion, rebuild the queue.

A train job runs these stages, writing progress to its job row:

    snapshot -> split (stable holdout, services.holdout; then a validation split of the training side)
    -> train (training.train; early stopping on the validation split) -> calibrate (temperature and
    multi-label thresholds on the validation split) -> out-of-sample probabilities -> label noise (cleanlab)
    -> evaluate on the holdout with the served predictions (bootstrap intervals) -> artifact + drift
    reference -> ModelVersion (ready, not serving) -> score chunks (scoring queue, several workers)
    -> promotion decision (once every chunk is scored) -> queue rebuild (services.queue_policy)
    -> job succeeded

A failure anywhere leaves the serving version and every label untouched: a failure before the version is
ready marks it failed and its partial artifact directory is never referenced; a scoring failure or a cancel
while scoring leaves the ready version unpromoted (it can still be promoted by hand), because promotion is
decided only after the last chunk is scored.
"""

from __future__ import annotations

import json
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
from django.db.models import Max, Subquery
from django.utils import timezone

from annotator.db import in_chunks
from annotator.models import (
    Annotation,
    Example,
    ExampleLabel,
    ExampleScore,
    Job,
    ModelVersion,
    Project,
)
from annotator.selectors.projects import project_labels
from annotator.services.jobs import JobReporter, job_create, job_finish, job_finish_first, send_after_commit
from annotator.serving import artifact_root, predictor_for, version_dir

log = logging.getLogger(__name__)

# Examples per scoring task: the unit of work a killed worker loses and another worker takes over.
SCORE_CHUNK = int(os.environ.get("SCORE_CHUNK_SIZE", 1000))
MIN_PER_CLASS = 2
# Promotion (project setting ``promotion`` "auto"): a candidate is rejected only when a paired bootstrap on the
# holdout shows it worse than the serving version by more than this much macro-F1 (training.metrics
# .paired_bootstrap: the upper end of the 95% interval of the difference is below -PROMOTION_MARGIN).
PROMOTION_MARGIN = 0.01
VALIDATION_SHARE = 0.15
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
    """The current labels and the newest annotation id they reflect, read by one SQL statement.

    One statement sees one snapshot of the database (PostgreSQL under READ COMMITTED, SQLite alike), so an
    annotation committed while the snapshot is taken is either in both the labels and ``max_annotation_id``
    or in neither: never counted as trained on when it was not (automatic retraining counts what came after
    ``max_annotation_id``)."""
    names = project_labels(project)
    newest = Annotation.objects.filter(example__project=project).order_by("-id").values("id")[:1]
    current: dict[int, list[str]] = {}
    texts_of: dict[int, tuple[str, str]] = {}
    max_id = 0
    for example_id, name, text, source, newest_id in (
        ExampleLabel.objects.filter(example__project=project).order_by("example_id", "label__position")
        .values_list("example_id", "label__name", "example__text", "example__source", Subquery(newest))
    ):
        current.setdefault(example_id, []).append(name)
        texts_of[example_id] = (text, source)
        max_id = newest_id or 0
    ids, texts, labels, sources = [], [], [], []
    for example_id, names_of_example in current.items():
        text, source = texts_of[example_id]
        ids.append(example_id)
        texts.append(text)
        labels.append(names_of_example if project.is_multi_label else names_of_example[0])
        sources.append(source)
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


@dataclass
class Split:
    """Indices into the snapshot: ``train`` (fits the weights), ``val`` (early stopping, temperature,
    thresholds, serving backend; carved from the training side) and ``holdout`` (only measures)."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray
    holdout_record: dict[str, Any]


def _split(project: Project, snapshot: Snapshot, *, seed: int) -> Split:
    """The stable holdout first (services.holdout: the same examples for every version), then a stratified
    validation split of the rest: 15% of every class with at least two examples (at least one each)."""
    from annotator.services.holdout import holdout_split
    from training.data import stratified_split

    held = holdout_split(project=project, example_ids=snapshot.example_ids, sources=snapshot.sources)
    rest_labels = [snapshot.labels[i] for i in held.rest]
    if project.is_multi_label:
        trainable = len(held.rest) >= 4
    else:
        counts: dict[str, int] = {}
        for label in rest_labels:
            counts[label] = counts.get(label, 0) + 1
        trainable = sum(1 for c in counts.values() if c >= MIN_PER_CLASS) >= 2
    if not trainable:
        raise TrainingInputError(
            f"{len(held.holdout)} of the {len(snapshot.texts)} labels are held out to measure versions, and the "
            f"rest is too little to train on (at least {MIN_PER_CLASS} labels in at least two classes); "
            "label more examples")
    train_rel, val_rel = stratified_split(rest_labels, VALIDATION_SHARE, seed=seed)
    return Split(train=held.rest[np.asarray(train_rel, dtype=np.int64)],
                 val=held.rest[np.asarray(val_rel, dtype=np.int64)], holdout=held.holdout,
                 holdout_record=held.record)


def _encoder_config(project: Project):  # noqa: ANN202
    from training.encoder import EncoderConfig

    return EncoderConfig(max_length=int(project.setting("max_length")))


def _embedding_cache():  # noqa: ANN202
    from training.embedding_cache import EmbeddingCache

    path = Path(settings.EMBEDDING_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return EmbeddingCache(path / "embeddings.sqlite3")


def run_training(job: Job, reporter: JobReporter) -> None:
    """Train, calibrate, find noise, measure on the holdout, store the version; then hand over to scoring,
    whose last chunk decides promotion."""
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
    from annotator.services.holdout import holdout_reason
    from training.artifacts import Predictor, load_artifact, save_artifact
    from training.drift_reference import build_drift_reference
    from training.encoder import Encoder
    from training.heads import probabilities
    from training.serving import choose_serving_backend
    from training.train import TrainConfig, calibrate, train_classifier, train_seeds

    split = _split(project, snapshot, seed=0)
    reporter(0.02, "split", f"{n} labeled examples; {production_share:.0%} from production; "
             f"{len(split.holdout)} held out to measure versions", force=True)
    pick = lambda values, idx: [values[i] for i in idx]  # noqa: E731
    train_texts, val_texts = pick(snapshot.texts, split.train), pick(snapshot.texts, split.val)
    train_labels, val_labels = pick(snapshot.labels, split.train), pick(snapshot.labels, split.val)
    holdout_texts, holdout_labels = pick(snapshot.texts, split.holdout), pick(snapshot.labels, split.holdout)
    holdout_sources = np.array(pick(snapshot.sources, split.holdout))
    measurable = holdout_reason(holdout_labels, names) is None

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
            # The spread is measured where the reported figure is: on the holdout, when it can be measured.
            seeds_result = train_seeds(
                train_texts, train_labels, names, seeds=list(range(int(params["seeds"]))), task=task,
                config=config, val_texts=val_texts, val_labels=val_labels, cache=cache,
                eval_texts=holdout_texts if measurable else None, eval_labels=holdout_labels if measurable else None,
                should_cancel=reporter.should_cancel,
            ).to_dict()
            seeds_result["on"] = "holdout" if measurable else "validation"
        model = train_classifier(
            train_texts, train_labels, names, task=task, config=config, val_texts=val_texts, val_labels=val_labels,
            progress=reporter.span(0.05, 0.55), should_cancel=reporter.should_cancel, cache=cache,
        )
        reporter.check()

        # Temperature and multi-label thresholds on the validation split (training side), never the holdout.
        reporter(0.56, "calibrating", "temperature scaling and thresholds on the validation split", force=True)
        val_embeddings = model.embed(val_texts)  # one pass serves calibration and the drift reference
        val_logits = model.logits_from_embeddings(val_embeddings)
        fit, calibrated_thresholds = calibrate(model, val_logits, val_labels)
        val_probs = probabilities(val_logits, task, model.temperature)
        metrics: dict[str, Any] = {
            "temperature": fit.temperature,
            # What the fitting saw; optimistic by construction, so never shown as the version's quality.
            "validation": {"n": len(val_texts), "macro_f1": model.val_metrics.get("macro_f1"),
                           "ece_before": fit.ece_before, "ece_after": fit.ece_after,
                           "thresholds": calibrated_thresholds,
                           "use": "early stopping, temperature, thresholds and the serving backend"},
            "n_train": len(train_texts), "n_val": len(val_texts), "n_holdout": len(holdout_texts), "mode": mode,
            "production_share": production_share, "seeds": seeds_result,
        }

        # Out-of-sample probabilities for every labeled example (frozen base embeddings, K folds), cleanlab.
        reporter(0.6, "noise", "out-of-sample probabilities and label noise (cleanlab)", force=True)
        base = Encoder(_encoder_config(project))
        base_embeddings = base.embed_cached(snapshot.texts, cache)
        noise_metrics, noise_rows = _label_noise(snapshot, base_embeddings, names, multi)
        # Data health: near-duplicate texts with different labels raise suspicion; outliers and classes too
        # small to learn are stored for the Review page (services.health).
        reporter(0.66, "health", "near-duplicates with different labels, outliers and class health", force=True)
        if noise_rows:
            from annotator.services.health import health_for_version, noise_rows_with_conflicts

            health, suspicious = health_for_version(
                snapshot_example_ids=snapshot.example_ids, texts=snapshot.texts, labels=snapshot.labels,
                embeddings=base_embeddings, probs=np.vstack([row["probs"] for row in noise_rows]), names=names)
            noise_metrics["n_conflict_flags"] = noise_rows_with_conflicts(noise_rows, suspicious)
            noise_metrics["n_issues"] = sum(1 for row in noise_rows if row["is_issue"])
            metrics["health"] = health
        metrics["noise"] = noise_metrics
        reporter.check()

        # Serving backend, then the holdout measured with exactly what serving will answer.
        reporter(0.7, "saving", "choosing the CPU serving backend and measuring on the holdout", force=True)
        serving = None
        # Too few validation texts cannot show that INT8 or ONNX keeps accuracy: serve fp32 then.
        if len(val_texts) >= MIN_VAL_FOR_BACKEND_CHOICE:
            serving = choose_serving_backend(Predictor.from_trained(model), val_texts, val_labels, tolerance=0.01)
            metrics["serving"] = serving
        serving_predictor = Predictor.from_trained(model, backend=(serving or {}).get("backend", "torch_fp32"))
        holdout, holdout_predicted = measure_holdout(serving_predictor, holdout_texts, holdout_labels, holdout_sources,
                                                     names, multi, split.holdout_record)
        metrics["holdout"] = holdout
        metrics.update(_reported(holdout))
        if seeds_result and seeds_result["on"] == "holdout":
            metrics["macro_f1_mean"] = seeds_result.get("mean")
            metrics["macro_f1_std"] = seeds_result.get("std")
        directory = version_dir(version)
        with _writing_files_of(version, directory):
            if directory.exists():  # a retried job's leftovers: never referenced by a ready version
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            content_hash = save_artifact(model, directory / "model", metrics=jsonable(metrics),
                                         extra={"snapshot": _snapshot_record(snapshot)}, serving=serving)
            _save_holdout(directory, [snapshot.example_ids[i] for i in split.holdout], holdout_labels,
                          holdout_predicted, names, multi)
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

    # Promotion waits for scoring (finish_scoring): a scoring failure must not leave this version serving.
    job.result = {"model_version": version.number, "model_version_id": version.id, "promoted": None,
                  "macro_f1": metrics.get("macro_f1"), "macro_f1_ci": metrics.get("macro_f1_ci"),
                  "holdout": {"n": holdout.get("n"), "reason": holdout.get("reason")}, "mode": mode,
                  "n_train": len(train_texts), "production_share": production_share,
                  "issues": noise_metrics.get("n_issues")}
    Job.objects.filter(pk=job.pk).update(result=job.result)
    reporter.close()
    start_scoring(job, version, reporter)


HOLDOUT_FILE = "holdout.json"


def _decision_names(predicted: np.ndarray, names: list[str], multi: bool) -> list[Any]:
    if multi:
        return [[names[j] for j in np.flatnonzero(row)] for row in predicted]
    return [names[int(i)] for i in predicted]


def _save_holdout(directory: Path, example_ids: list[int], labels: list[Any], predicted: np.ndarray | None,
                  names: list[str], multi: bool) -> None:
    """The held-out examples with their labels as of the snapshot and the version's served decisions, beside
    the artifact: the promotion decision compares the serving version on exactly these."""
    decisions = [] if predicted is None else _decision_names(predicted, names, multi)
    payload = {"example_ids": [int(pk) for pk in example_ids], "labels": labels, "predicted": decisions}
    (directory / HOLDOUT_FILE).write_text(json.dumps(payload))


def measure_holdout(predictor: Any, texts: list[str], labels: list[Any], sources: np.ndarray, names: list[str],
                    multi: bool, record: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The version's reported metrics: the held-out labels against the decisions and probabilities that
    ``predictor`` (the serving backend with the stored temperature and thresholds) gives, each with a
    bootstrap 95% interval; or, below the documented minimum, the reason instead of numbers.

    Returns the ``holdout`` record and the decisions (``None`` without held-out examples)."""
    from annotator.services.holdout import HOLDOUT_MIN, HOLDOUT_MIN_PER_CLASS, TOO_FEW, holdout_reason
    from training.calibration import apply_temperature, calibration_report
    from training.metrics import ece_interval, evaluate, metric_intervals

    out = dict(record)
    reason = holdout_reason(labels, names)
    if not texts:
        return {**out, "reason": reason}, None
    prediction = predictor.predict(texts, with_token_stats=False)
    predicted = prediction.predicted.astype(np.int64)
    if reason:
        return {**out, "reason": reason}, predicted
    y = _label_matrix(labels, names, multi)
    measured = evaluate(y, predicted, names, probs=prediction.probs, multi_label=multi)
    intervals = metric_intervals(y, predicted, names, multi_label=multi)
    for key, interval in intervals.items():
        if key != "per_class":
            measured[f"{key}_ci"] = interval
    for row, interval in zip(measured["per_class"], intervals["per_class"], strict=True):
        row.update({f"{key}_ci": value for key, value in interval.items()})
        if row["support"] < HOLDOUT_MIN_PER_CLASS:
            row["reason"] = TOO_FEW
    calibration = calibration_report(prediction.logits, y, multi_label=multi, temperature=predictor.temperature)
    measured["ece_before"] = calibration.ece_before
    measured["ece_before_ci"] = ece_interval(apply_temperature(prediction.logits, 1.0, multi_label=multi), y)
    measured["ece_ci"] = ece_interval(prediction.probs, y)
    measured["calibration"] = calibration.to_dict()
    slices = {}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        if mask.sum() < HOLDOUT_MIN:
            slices[f"source={source}"] = {"n": int(mask.sum()), "reason": TOO_FEW}
            continue
        part = evaluate(y[mask], predicted[mask], names, multi_label=multi)
        part["macro_f1_ci"] = metric_intervals(y[mask], predicted[mask], names, multi_label=multi)["macro_f1"]
        slices[f"source={source}"] = {key: part[key] for key in ("n", "macro_f1", "macro_f1_ci")}
    measured["slices"] = slices
    return {**out, **measured}, predicted


def _reported(holdout: dict[str, Any]) -> dict[str, Any]:
    """The headline figures every reader of a version takes (the models API, learning curve, overview, cold
    start): the holdout's, or ``None`` when it cannot be measured."""
    keys = ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci", "micro_f1", "micro_f1_ci", "ece", "ece_ci",
            "ece_before", "ece_before_ci")
    return {key: holdout.get(key) for key in keys}


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
    """cleanlab over K-fold out-of-sample probabilities; one row per labeled example.

    Single-label: several views of the labels (logistic regression and kNN on the frozen embeddings, a
    TF-IDF lexical model, and fine-tuned folds where the worker can afford them), each out-of-fold over
    the same folds, mixed with weights that minimise their out-of-fold log loss (training.cv); the metrics
    record each view's log loss, weight and seconds under ``views``. Multi-label: one-vs-rest logistic
    regression on the frozen embeddings.
    """
    views_metrics: dict[str, Any] | None = None
    if multi:
        from training.cv_logistic import oos_probs_frozen_multilabel
        from training.noise import find_noise_multilabel

        y = _label_matrix(snapshot.labels, names, True)
        label_lists = [list(np.flatnonzero(row)) for row in y]
        probs = oos_probs_frozen_multilabel(embeddings, y, len(names))
        report = find_noise_multilabel(label_lists, probs, names)
        suggested = [",".join(names[j] for j in np.flatnonzero(p >= 0.5)) for p in probs]
    else:
        from training.cv_finetuned import FINETUNE_CPU_MAX_EXAMPLES, finetune_affordable
        from training.ensemble import weighted_ensemble
        from training.noise import find_noise
        from training.noise_views import label_noise_views
        from training.train import TrainConfig

        y = _label_matrix(snapshot.labels, names, False)
        # Fine-tuned folds are the strongest view, but five fine-tunes cost minutes per few hundred texts
        # on a CPU: they run on a GPU worker, or on a CPU only up to NOISE_FINETUNE_CPU_MAX_EXAMPLES labels.
        finetune_config = None
        try:
            on_gpu = TrainConfig(device=settings.TRAINING_DEVICE).resolve_device().type == "cuda"
        except ValueError:  # CUDA asked for but absent: training itself reports that
            on_gpu = False
        cpu_max = int(getattr(settings, "NOISE_FINETUNE_CPU_MAX_EXAMPLES", FINETUNE_CPU_MAX_EXAMPLES))
        if finetune_affordable(len(y), on_gpu=on_gpu, cpu_max=cpu_max):
            project = Example.objects.select_related("project").get(pk=snapshot.example_ids[0]).project
            finetune_config = TrainConfig(mode="full", encoder=_encoder_config(project), epochs=2, seed=0,
                                          device=settings.TRAINING_DEVICE)
        views = label_noise_views(embeddings, snapshot.texts, y, len(names), finetune=finetune_config is not None,
                                  label_names=names, finetune_config=finetune_config)
        probs, mixture = weighted_ensemble(views.probs, y, len(names), seconds=views.seconds,
                                           settings=views.settings)
        views_metrics = mixture.to_dict()
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
    if views_metrics is not None:
        metrics["views"] = views_metrics["views"]
        metrics["ensemble"] = {"log_loss": views_metrics["ensemble_log_loss"], "method": views_metrics["method"]}
    rows = [
        {"example_id": example_id, "probs": probs[i], "label_quality": float(report.label_quality[i]),
         "is_issue": bool(report.is_issue[i]), "suggested": suggested[i]}
        for i, example_id in enumerate(snapshot.example_ids)
    ]
    return metrics, rows


def _uncertainty(probs: np.ndarray, multi: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """confidence, normalised entropy, margin (best minus second best; multi-label: twice the distance of the
    most undecided class from 0.5) per row, from training's one summary."""
    from training.query import uncertainty_summary

    summary = uncertainty_summary(probs, multi_label=multi)
    return summary["confidence"], summary["entropy"], 1.0 - summary["margin"]


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


def decide_promotion(version: ModelVersion) -> dict[str, Any]:
    """Decide whether ``version`` replaces the serving version, store the decision with its evidence in
    ``version.comparison`` (``decision``, ``evidence``, ``policy``) and promote when it says so.

    - Nothing serves: ``first version``, promoted (also under ``manual``: predictions need a version).
    - ``promotion`` ``manual``: ``manual``, never promoted automatically; the evidence is still recorded.
    - ``auto``: ``rejected`` when a paired bootstrap on this version's holdout shows it worse than the serving
      version by more than ``PROMOTION_MARGIN`` macro-F1 (training.metrics.paired_bootstrap); otherwise
      ``promoted``. A comparison that cannot be made fairly (too few held-out labels, a serving version trained
      before the stable holdout, a serving artifact that fails to load) cannot show the candidate worse, so it
      is promoted, and the evidence says why there was no comparison.

    Called once every chunk is scored; a second call returns the stored decision."""
    from annotator.services.models import model_promote

    version.refresh_from_db()
    if version.comparison.get("decision"):
        return {"decision": version.comparison["decision"], "evidence": version.comparison.get("evidence", {})}
    project = Project.objects.select_related("serving_version").get(pk=version.project_id)
    policy = project.setting("promotion")
    serving = project.serving_version
    if serving is None or serving.status != ModelVersion.Status.READY:
        decision = "first version"
        evidence: dict[str, Any] = {"reason": "no version served yet" + (
            "; promotion is manual, but the first version serves so that predictions work" if policy == "manual"
            else "")}
    else:
        evidence = _paired_evidence(version, serving)
        if policy == "manual":
            decision = "manual"
        else:
            decision = "rejected" if evidence.get("shown_worse") else "promoted"
    record = {"decision": decision, "evidence": jsonable(evidence), "policy": policy,
              "decided_at": timezone.now().isoformat()}
    ModelVersion.objects.filter(pk=version.pk).update(comparison={**version.comparison, **record})
    version.refresh_from_db()
    if decision in ("promoted", "first version"):
        against = evidence.get("against_version")
        model_promote(version=version, reason=(
            "first version" if decision == "first version"
            else f"promoted automatically: not shown worse than v{against}" if against
            else "promoted automatically"))
    return {"decision": decision, "evidence": record["evidence"]}


def _paired_evidence(version: ModelVersion, serving: ModelVersion) -> dict[str, Any]:
    """The paired comparison of ``version`` with ``serving`` on ``version``'s holdout, or why there is none."""
    from annotator.services.holdout import same_rule
    from training.metrics import paired_bootstrap

    base = {"against_version": serving.number, "on": "holdout", "margin": PROMOTION_MARGIN}
    holdout = (version.metrics or {}).get("holdout") or {}
    if holdout.get("reason"):
        return {**base, "n": holdout.get("n"), "reason": f"no comparison: {holdout['reason']}"}
    if not same_rule((serving.metrics or {}).get("holdout")):
        return {**base, "reason": f"no fair comparison: v{serving.number} was trained before the stable holdout "
                                  "and may have trained on these examples"}
    try:
        stored = json.loads((version_dir(version) / HOLDOUT_FILE).read_text())
    except (OSError, ValueError) as error:
        return {**base, "reason": f"no comparison: the held-out predictions of v{version.number} are unreadable "
                                  f"({error})"}
    names = project_labels(version.project)
    multi = version.project.is_multi_label
    texts = {pk: text for chunk in in_chunks(stored["example_ids"])
             for pk, text in Example.objects.filter(id__in=chunk).values_list("id", "text")}
    rows = [i for i, pk in enumerate(stored["example_ids"]) if pk in texts]
    try:
        prediction = predictor_for(serving).predict([texts[stored["example_ids"][i]] for i in rows],
                                                    with_token_stats=False)
    except Exception as error:  # noqa: BLE001 - a broken serving artifact must not block a new version
        log.warning("promotion: v%s failed to predict: %s", serving.number, error)
        return {**base, "reason": f"no comparison: v{serving.number} failed to predict ({error})"}
    y = _label_matrix([stored["labels"][i] for i in rows], names, multi)
    candidate = _label_matrix([stored["predicted"][i] for i in rows], names, multi)
    result = paired_bootstrap(y, candidate, prediction.predicted.astype(np.int64), names, margin=PROMOTION_MARGIN,
                              multi_label=multi)
    result["serving_macro_f1"] = result.pop("baseline_macro_f1")
    result["serving_macro_f1_ci"] = result.pop("baseline_macro_f1_ci")
    return {**base, **result}


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
                   message="cancelled while scoring: the new version was stored but not promoted (promote it by "
                           "hand on the models page); scores are partial and the queue was not rebuilt")


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
    from annotator import tasks

    version = ModelVersion.objects.select_related("project").get(pk=job.params["model_version_id"])
    # The drift reference of what production should look like: the pool this version just scored (saved
    # before promotion, so a promoted version always has it).
    from annotator.services.drift_reference import drift_reference_update

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
