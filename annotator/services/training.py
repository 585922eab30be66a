"""A train job, from the snapshot to a ready version handed over to scoring.

A train job runs these stages, writing progress to its job row:

    snapshot -> split (stable holdout, services.holdout; then a validation split of the training side;
    services.snapshot) -> train (training.train; early stopping on the validation split) -> calibrate
    (temperature and multi-label thresholds on the validation split) -> out-of-sample probabilities -> label
    noise (cleanlab) -> evaluate on the holdout with the served predictions (services.evaluation) -> artifact
    + drift reference -> ModelVersion (ready, not serving) -> score chunks (services.scoring, several workers)
    -> promotion decision (services.models.decide_promotion, once every chunk is scored) -> queue rebuild
    (services.queue_policy) -> job succeeded

A failure anywhere leaves the serving version and every label untouched: a failure before the version is
ready marks it failed and its partial artifact directory is never referenced; a scoring failure or a cancel
while scoring leaves the ready version unpromoted (it can still be promoted by hand), because promotion is
decided only after the last chunk is scored.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotator.errors import InvalidInput
from annotator.models import Job, ModelVersion, Project
from annotator.selectors.projects import project_labels
from annotator.services.embeddings import embedding_cache, encoder_config
from annotator.services.evaluation import label_matrix, measure_holdout, reported, save_holdout
from annotator.services.jobs import JobReporter
from annotator.services.jsonable import jsonable
from annotator.services.scoring import noise_scores_save, start_scoring
from annotator.services.snapshot import (
    Snapshot,
    TrainingInputError,
    snapshot_record,
    split_snapshot,
    take_snapshot,
)
from annotator.serving import artifact_root, version_dir

log = logging.getLogger(__name__)

MIN_VAL_FOR_BACKEND_CHOICE = 50


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


def _encoder_config(project: Project):  # noqa: ANN202
    """The project's encoder config (services.encoders), resolved once per job so that a settings change while it
    runs cannot mix two encoders in one version; TrainingInputError when the operator no longer lists the
    encoder, its directory stopped loading, or max_length is above its positions."""
    try:
        return encoder_config(project)
    except InvalidInput as error:
        raise TrainingInputError(f"{error.errors[0]['message']}; change it in the project's settings (the serving "
                                 "version is unchanged)") from error


def _encoder_record(name: str, base: Any) -> dict[str, Any]:
    """What a version records of the encoder it was trained from: the allow-listed name and the fingerprint of
    the base weights plus preprocessing (the embedding cache's key), with the figures shown beside them."""
    return {"name": name, "fingerprint": base.fingerprint, "hidden_size": base.hidden_size,
            "parameters": sum(p.numel() for p in base.model.parameters()),
            "model_type": str(getattr(base.model.config, "model_type", "")), **base.config.preprocessing()}


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
    encoder_name, base_config = project.setting("encoder"), _encoder_config(project)
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

    split = split_snapshot(project, snapshot, seed=0)
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
    version = _new_version(project, job, snapshot,
                           encoder={**base_config.to_dict(), "name": encoder_name, "fingerprint": None})
    cache = embedding_cache()
    config = TrainConfig(mode=params.get("mode", "auto"), encoder=base_config, seed=0,
                         device=settings.TRAINING_DEVICE)
    mode = config.resolve_mode(n)
    ModelVersion.objects.filter(pk=version.pk).update(mode=mode)
    # The frozen encoder's vectors are the same in every version: each text is embedded once, ever
    # (services.embeddings). A fine-tuned encoder's are its own, and would only fill the cache.
    frozen_cache = cache if mode == "frozen" else None
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
        # One pass serves calibration and the drift reference.
        val_embeddings = (model.encoder.embed_cached(val_texts, frozen_cache) if frozen_cache is not None
                          else model.embed(val_texts))
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
        # The project's encoder as the operator listed it, resolved at the job's start (never a version trained
        # with another one): its fingerprint keys the cache, so a changed encoder, pooling or max_length embeds
        # everything afresh. Frozen: the trained model's encoder is that base one (no second copy to load).
        base = model.encoder if mode == "frozen" else Encoder(base_config)
        base_embeddings = base.embed_cached(snapshot.texts, cache)
        encoder_record = _encoder_record(encoder_name, base)
        noise_metrics, noise_rows = _label_noise(snapshot, base_embeddings, names, multi, encoder=base_config)
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
            serving = choose_serving_backend(Predictor.from_trained(model), val_texts, val_labels, tolerance=0.01,
                                             cache=frozen_cache)
            metrics["serving"] = serving
        serving_predictor = Predictor.from_trained(model, backend=(serving or {}).get("backend", "torch_fp32"))
        holdout, holdout_predicted = measure_holdout(serving_predictor, holdout_texts, holdout_labels, holdout_sources,
                                                     names, multi, split.holdout_record, cache=frozen_cache)
        metrics["holdout"] = holdout
        metrics.update(reported(holdout))
        if seeds_result and seeds_result["on"] == "holdout":
            metrics["macro_f1_mean"] = seeds_result.get("mean")
            metrics["macro_f1_std"] = seeds_result.get("std")
        directory = version_dir(version)
        with _writing_files_of(version, directory):
            if directory.exists():  # a retried job's leftovers: never referenced by a ready version
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            content_hash = save_artifact(model, directory / "model", metrics=jsonable(metrics),
                                         extra={"snapshot": snapshot_record(snapshot), "encoder": encoder_record},
                                         serving=serving)
            save_holdout(directory, [snapshot.example_ids[i] for i in split.holdout], holdout_labels,
                          holdout_predicted, names, multi)
        # The drift reference must look like what serving will produce: the chosen backend's embeddings.
        backend = (serving or {}).get("backend", "torch_fp32")
        if backend == "torch_fp32":
            reference_probs, reference_embeddings = val_probs, val_embeddings
        else:
            served = load_artifact(directory / "model").predict(val_texts, with_token_stats=False,
                                                                cache=frozen_cache)
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
                config=jsonable({**config.to_dict(), "encoder": {**config.encoder.to_dict(), **encoder_record}}),
                finished_at=timezone.now(),
            )
            version.refresh_from_db()
            noise_scores_save(version, noise_rows)
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


def _new_version(project: Project, job: Job, snapshot: Snapshot, *, encoder: dict[str, Any]) -> ModelVersion:
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        number = (ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
        return ModelVersion.objects.create(
            project=project, number=number, job=job, n_train=len(snapshot.texts),
            snapshot=snapshot_record(snapshot), config={"encoder": encoder},
        )


def _label_noise(snapshot: Snapshot, embeddings: np.ndarray, names: list[str], multi: bool, *,
                 encoder: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """cleanlab over K-fold out-of-sample probabilities; one row per labeled example.

    Single-label: several views of the labels (logistic regression and kNN on the frozen embeddings, a
    TF-IDF lexical model, and fine-tuned folds where the worker can afford them), each out-of-fold over
    the same folds, mixed with weights that minimise their out-of-fold log loss (training.cv); the metrics
    record each view's log loss, weight and seconds under ``views``. Multi-label: one-vs-rest logistic
    regression on the frozen embeddings. ``encoder`` (training.encoder.EncoderConfig) is the job's encoder,
    which the fine-tuned folds start from.
    """
    views_metrics: dict[str, Any] | None = None
    if multi:
        from training.cv_logistic import oos_probs_frozen_multilabel
        from training.noise import find_noise_multilabel

        y = label_matrix(snapshot.labels, names, True)
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

        y = label_matrix(snapshot.labels, names, False)
        # Fine-tuned folds are the strongest view, but five fine-tunes cost minutes per few hundred texts
        # on a CPU: they run on a GPU worker, or on a CPU only up to NOISE_FINETUNE_CPU_MAX_EXAMPLES labels.
        finetune_config = None
        try:
            on_gpu = TrainConfig(device=settings.TRAINING_DEVICE).resolve_device().type == "cuda"
        except ValueError:  # CUDA asked for but absent: training itself reports that
            on_gpu = False
        cpu_max = int(getattr(settings, "NOISE_FINETUNE_CPU_MAX_EXAMPLES", FINETUNE_CPU_MAX_EXAMPLES))
        if finetune_affordable(len(y), on_gpu=on_gpu, cpu_max=cpu_max):
            finetune_config = TrainConfig(mode="full", encoder=encoder, epochs=2, seed=0,
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

