"""The first stages of a train job: the snapshot of the current labels, and its split.

The split keeps the stable holdout apart first (services.holdout: the same examples for every version, only
ever measured on), then carves a stratified validation split from the rest (early stopping, temperature,
thresholds, serving backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Subquery

from annotator.models import Annotation, ExampleLabel, Project
from annotator.selectors.projects import project_labels

MIN_PER_CLASS = 2
VALIDATION_SHARE = 0.15


class TrainingInputError(Exception):
    """The project cannot be trained as it is (too few labels); a terminal, not a retryable, error."""


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


def split_snapshot(project: Project, snapshot: Snapshot, *, seed: int) -> Split:
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


def snapshot_record(snapshot: Snapshot) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for labels in snapshot.labels:
        for name in labels if isinstance(labels, list) else [labels]:
            counts[name] = counts.get(name, 0) + 1
    sources: dict[str, int] = {}
    for source in snapshot.sources:
        sources[source] = sources.get(source, 0) + 1
    return {"max_annotation_id": snapshot.max_annotation_id, "n_labeled": len(snapshot.texts),
            "per_label": counts, "per_source": sources}
