"""Drift references: what each window of production traffic is compared with, per model version.

Active learning labels the examples the model is least sure of, so the labeled data is not what
production looks like: a reference built from its validation split made in-domain traffic alert
("predicted class mix shifted", "model confidence rose") just like traffic from an unseen topic. The
project setting ``drift_reference`` picks the reference instead:

``pool`` (default)
    Built by :func:`drift_reference_update` once the scoring job has scored the pool with the version: a
    deterministic sample of up to ``POOL_SAMPLE`` unlabeled examples that are not production samples
    (the probabilities the scoring job stored, the pool embeddings it saved, token statistics under the
    version's own tokenizer). The pool has lost exactly the hard examples that were taken out of it to be
    labeled, and production still holds examples like them, so the labeled data joins as a second
    stratum, weighted by its share (labeled / (labeled + pool), production-sourced examples left out of
    both counts) and represented by the validation-split reference of the train job, the only labeled
    rows the version did not train on (``training.drift_reference.combine_drift_references``). Saved as
    ``drift-reference-pool`` beside the artifact.
``production_baseline``
    The first full window of production samples that the serving version checks (after its promotion, or
    after the setting was chosen) becomes the reference of every later window of that version, saved as
    ``drift-reference-production``. That first window is itself compared with the pool reference (or the
    labeled split), and its record says it became the baseline. For teams whose production traffic is
    known to differ from the data the project was built from.

The validation split's own reference (``drift-reference``, written by the train job) stays the fallback:
when the pool was empty (every example labeled, or only production samples unlabeled) or the version was
scored before pool references existed. Every drift window records which reference it was compared with
(``DriftWindow.details["reference"]``: ``kind``, ``model_version``, a ``summary`` sentence, counts, the
``setting`` and, when the setting could not be honoured, ``fallback``), shown on the drift page and in
``GET drift/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from annotator.db import IdDigest
from annotator.models import Example, ExampleScore, ModelVersion, Source
from annotator.selectors.projects import project_labels
from annotator.services.pool_embeddings import pool_embeddings_for
from annotator.serving import predictor_for, version_dir

log = logging.getLogger(__name__)

#: Pool examples summarised into the reference (a deterministic sample when the pool is larger).
POOL_SAMPLE = 2000
#: A pool smaller than this says too little about production: the labeled split stays the reference.
MIN_POOL = 10
LABELED_FILE = "drift-reference"
POOL_FILE = "drift-reference-pool"
BASELINE_FILE = "drift-reference-production"


@dataclass
class ChosenReference:
    """The reference a drift check compares its windows with, and the record each window keeps of it.

    ``becomes_baseline``: the setting asks for a production baseline and this version has none yet, so the
    next window checked becomes it (:func:`drift_baseline_save`).
    """

    reference: Any  # training.drift.DriftReference
    record: dict[str, Any]
    becomes_baseline: bool = False


def _load(stem: Path) -> Any | None:
    from training.drift_reference import DriftReference

    # The JSON half is written last (see _save), so its presence means the pair is complete.
    if not stem.with_suffix(".json").exists():
        return None
    return DriftReference.load(stem)


def _save(reference: Any, stem: Path) -> None:
    """Write the pair under temporary names and move the NPZ, then the JSON, into place, so a drift check
    never reads half a file."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    temporary = stem.with_name(f"tmp-{os.getpid()}-{stem.name}")  # no dot: save() names the pair by suffix
    json_path, npz_path = reference.save(temporary)
    os.replace(npz_path, stem.with_suffix(".npz"))
    os.replace(json_path, stem.with_suffix(".json"))


def _labeled_record(version: ModelVersion, reference: Any) -> dict[str, Any]:
    return {
        "kind": "labeled_split",
        "model_version": version.number,
        "n": reference.n,
        "summary": f"the labeled validation split of v{version.number} ({reference.n:,} examples)",
    }


def _labeled_outside_production(version: ModelVersion) -> int:
    per_source = (version.snapshot or {}).get("per_source") or {}
    if per_source:
        return sum(int(n) for source, n in per_source.items() if source != Source.PRODUCTION)
    return int((version.snapshot or {}).get("n_labeled") or 0)


def _pool_token_stats(version: ModelVersion, texts: list[str]) -> Any | None:
    """Token statistics under the version's stored tokenizer and preprocessing (the scoring worker has the
    predictor cached); none for a version without files."""
    if not version.artifact_path:
        return None
    return predictor_for(version).encoder.token_stats(texts)


def drift_reference_update(*, version: ModelVersion) -> dict[str, Any] | None:
    """Build and save the pool reference of ``version`` from what its scoring job stored.

    Call it once the scoring job has scored every chunk. Reads the ExampleScore rows of the version
    without ``label_quality`` (the unlabeled examples it scored) whose example is not a production sample,
    takes a deterministic sample of up to ``POOL_SAMPLE`` of them (by a hash of the id, in SQL) and
    combines their summary with the labeled validation split's (see the module docstring). Idempotent: a
    second call writes the same reference (only ``built_at`` changes).

    Returns the reference's description, or None when the pool is smaller than ``MIN_POOL`` (the labeled
    split stays the reference).
    """
    from training.drift_reference import DriftReference, build_drift_reference, combine_drift_references

    project = version.project
    pool_scores = (ExampleScore.objects.filter(model_version=version, label_quality__isnull=True)
                   .exclude(example__source=Source.PRODUCTION))
    n_pool = pool_scores.count()
    if n_pool < MIN_POOL:
        log.info("drift reference of v%s: pool of %s examples, keeping the labeled split", version.number, n_pool)
        return None
    # A deterministic sample drawn in SQL (the order of a hash of the id), so a pool of a million examples
    # costs the sample's rows and embeddings, never the pool's.
    rows = sorted(pool_scores.order_by(IdDigest("drift-pool:", "example_id"), "example_id")
                  .values_list("example_id", "probs")[:POOL_SAMPLE])
    ids = [example_id for example_id, _ in rows]
    found = pool_embeddings_for(version, ids)
    if found is None:
        log.info("drift reference of v%s: the pool's embeddings were not all saved; keeping the labeled split",
                 version.number)
        return None
    embeddings = dict(zip(ids, found, strict=True))
    probs = np.array([p for _, p in rows], dtype=np.float64)
    text_of = dict(Example.objects.filter(id__in=ids).values_list("id", "text"))
    texts = [text_of[i] for i in ids]

    directory = version_dir(version)
    labeled: DriftReference | None = _load(directory / LABELED_FILE)
    names = labeled.label_names if labeled is not None else project_labels(project)[: probs.shape[1]]
    pool = build_drift_reference(
        probs=probs,
        label_names=names,
        embeddings=np.vstack([embeddings[i] for i in ids]).astype(np.float32),
        token_stats=_pool_token_stats(version, texts),
        texts=texts,
        multi_label=project.is_multi_label,
        max_embeddings=POOL_SAMPLE,
        max_confidences=POOL_SAMPLE,
    )
    n_labeled = _labeled_outside_production(version) if labeled is not None else 0
    labeled_share = n_labeled / (n_labeled + n_pool)
    summary = f"the unlabeled pool scored by v{version.number} ({n_pool:,} examples, {len(ids):,} sampled)"
    if n_labeled:
        summary += (
            f" and the {n_labeled:,} labeled examples ({labeled_share:.0%} of the data; their validation "
            "split stands for them)"
        )
    description = {
        "kind": "pool",
        "model_version": version.number,
        "n_pool": n_pool,
        "n_sampled": len(ids),
        "n_labeled": n_labeled,
        "labeled_share": round(labeled_share, 4),
        "built_at": timezone.now().isoformat(),
        "summary": summary,
    }
    parts = [(pool, float(n_pool))]
    if labeled is not None and n_labeled:
        parts.append((labeled, float(n_labeled)))
    reference = combine_drift_references(parts, description=description)
    _save(reference, directory / POOL_FILE)
    return description


def drift_reference_for(*, version: ModelVersion) -> ChosenReference:
    """The reference the project's ``drift_reference`` setting asks for, or the best fallback there is."""
    from training.drift_reference import DriftReference

    setting = version.project.setting("drift_reference")
    directory = version_dir(version)
    if setting == "production_baseline":
        baseline = _load(directory / BASELINE_FILE)
        if baseline is not None:
            return ChosenReference(baseline, {**baseline.description, "setting": setting})
    pool = _load(directory / POOL_FILE)
    if pool is not None:
        reference, record = pool, dict(pool.description)
    else:
        reference = DriftReference.load(directory / LABELED_FILE)
        record = _labeled_record(version, reference)
    record["setting"] = setting
    if setting == "production_baseline":
        record["fallback"] = (
            f"the first window v{version.number} checked: it becomes the production baseline of the next ones"
        )
        record["became_baseline"] = True
        return ChosenReference(reference, record, becomes_baseline=True)
    if pool is None:
        record["fallback"] = f"no scored pool for v{version.number} (no unlabeled examples outside production)"
    return ChosenReference(reference, record)


def drift_baseline_save(
    *,
    version: ModelVersion,
    sequence: int,
    label_names: list[str],
    probs: np.ndarray,
    embeddings: np.ndarray | None,
    token_stats: Any,
    texts: list[str],
) -> ChosenReference:
    """Make window ``sequence`` (as the serving version scored it) the production baseline of ``version``.

    The files are written when the surrounding transaction commits (with the window rows), so a drift check
    that rolls back leaves no baseline behind that no window names."""
    from training.drift_reference import build_drift_reference

    description = {
        "kind": "production_baseline",
        "model_version": version.number,
        "window_sequence": sequence,
        "n": len(texts),
        "built_at": timezone.now().isoformat(),
        "summary": f"production window #{sequence} ({len(texts):,} samples), the first v{version.number} checked",
    }
    reference = build_drift_reference(
        probs=probs,
        label_names=label_names,
        embeddings=embeddings,
        token_stats=token_stats,
        texts=texts,
        multi_label=version.project.is_multi_label,
        description=description,
    )
    stem = version_dir(version) / BASELINE_FILE
    transaction.on_commit(lambda: _save(reference, stem))
    return ChosenReference(reference, {**description, "setting": "production_baseline"})
