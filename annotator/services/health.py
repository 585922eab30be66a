"""Data health of a trained version, and settling a conflict group in one decision.

A train job runs :func:`health_for_version` on its snapshot (the frozen base embeddings and out-of-sample
probabilities it already has): conflicting near-duplicates (training.health.conflicting_duplicates), outliers
and classes too small to learn (training.health.dataset_health). The findings are stored in
``ModelVersion.metrics["health"]``; members of a conflict group whose label is not the group's majority (all
members when no label has a majority) are the clearest label errors there are, and
:func:`noise_rows_with_conflicts` raises their suspicion in the version's noise scores.

:func:`conflict_group_settle` is the reviewer's one action for a group: a review decision giving every member
the same label, through the noise report's decisions (all or nothing), which settles them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser

from annotator.errors import InvalidInput
from annotator.models import ExampleLabel, Project
from annotator.services.annotations import label_map, validate_labels
from annotator.services.noise import MAX_DECISIONS, noise_decisions_apply

MAX_GROUPS = 500  # conflict groups stored per version, best first (all of them raise suspicion)
MAX_MEMBERS = 50  # members stored per group; ``size`` keeps the full count
MAX_OUTLIERS = 200  # most outlying examples stored per version
# A conflict member's label quality is lowered to at most this (cleanlab's scores are in [0, 1], low = suspect),
# so it ranks among the first in the noise report and the suspect queue.
CONFLICT_QUALITY = 0.05


def _reason(majority: Any, size: int, score: float, identical: bool) -> str:
    how = "the same text after normalisation" if identical else f"near-duplicates (cosine {score:.2f})"
    if majority is None:
        return f"{size} {how} carry different labels and no label has a majority"
    name = ", ".join(majority) if isinstance(majority, list) else majority
    return f"{size} {how} carry different labels; most of them are labeled {name}"


def health_for_version(*, snapshot_example_ids: Sequence[int], texts: Sequence[str], labels: Sequence[Any],
                       embeddings: np.ndarray, probs: np.ndarray | None,
                       names: Sequence[str]) -> tuple[dict[str, Any], dict[int, str]]:
    """Conflicting near-duplicates, outliers and class health of one snapshot.

    ``labels`` are the snapshot's (a name per example, or a list of names for multi-label projects);
    ``embeddings`` (n, d) and ``probs`` (n, K) are row-aligned with ``snapshot_example_ids``.

    Returns the JSON-able dict for ``ModelVersion.metrics["health"]`` and the suspicious examples:
    ``{example_id: reason}`` for every member of a conflict group whose label is not the group's majority
    (every member when there is no majority).
    """
    from training.duplicates import DEFAULT_THRESHOLD, conflicting_duplicates
    from training.health import dataset_health

    ids = [int(i) for i in snapshot_example_ids]
    names = [str(name) for name in names]
    multi = any(isinstance(label, list | tuple) for label in labels)
    start = time.perf_counter()
    keyed = [tuple(label) if multi else label for label in labels]
    groups = conflicting_duplicates(texts, keyed, embeddings, threshold=DEFAULT_THRESHOLD)
    conflicts_seconds = round(time.perf_counter() - start, 3)

    suspicious: dict[int, str] = {}
    stored = []
    for group in groups:
        reason = _reason(group.majority_label, len(group.indices), group.score, group.identical)
        for i in group.disagreeing:
            suspicious.setdefault(ids[i], reason)
        if len(stored) < MAX_GROUPS:
            members = group.indices[:MAX_MEMBERS]
            stored.append({
                "example_ids": [ids[i] for i in members],
                "labels": [group.labels[k] for k in range(len(members))],
                "majority_label": group.majority_label,
                "score": round(group.score, 6),
                "identical": group.identical,
                "size": len(group.indices),
            })

    index = {name: j for j, name in enumerate(names)}
    indexed: list[Any] = [[index[n] for n in label] for label in labels] if multi else [index[label] for label in labels]
    report = dataset_health(embeddings, probs, indexed, names, multi_label=multi, top=MAX_OUTLIERS)
    outliers = report["outliers"]
    outliers["top"] = [{"example_id": ids[row.pop("index")], **row} for row in outliers["top"]]
    health = {
        "conflicts": {
            "threshold": DEFAULT_THRESHOLD,
            "n_groups": len(groups),
            "n_examples": sum(len(g.indices) for g in groups),
            "n_suspicious": len(suspicious),
            "truncated": len(groups) > MAX_GROUPS,
            "groups": stored,
        },
        "outliers": outliers,
        "classes": report["classes"],
        "class_imbalance": report["class_imbalance"],
        "too_small": report["too_small"],
        "method": report["method"],
        "notes": report["notes"],
        "seconds": {"conflicts": conflicts_seconds, **{f"health_{k}": v for k, v in report["seconds"].items()}},
    }
    return health, suspicious


def noise_rows_with_conflicts(rows: list[dict[str, Any]], suspicious: dict[int, str], *,
                              quality: float = CONFLICT_QUALITY) -> int:
    """Raise the suspicion of conflict members in a train job's noise rows (``example_id``, ``label_quality``,
    ``is_issue``), in place: flagged, label quality at most ``quality``. Returns how many were not flagged
    before."""
    added = 0
    for row in rows:
        if row["example_id"] in suspicious:
            added += not row["is_issue"]
            row["is_issue"] = True
            row["label_quality"] = min(float(row["label_quality"]), quality)
    return added


def _example_ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise InvalidInput([{"field": "example_ids", "message": "example_ids must be a non-empty list of example ids"}])
    if len(value) > MAX_DECISIONS:
        raise InvalidInput([{"field": "example_ids", "message": f"at most {MAX_DECISIONS} examples per group"}])
    errors: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item < 2**63:
            errors.append({"index": i, "field": "example_ids", "message": "each example id must be a positive integer"})
        elif item in seen:
            errors.append({"index": i, "field": "example_ids", "message": f"example {item} is listed twice"})
        else:
            seen.add(item)
    if errors:
        raise InvalidInput(errors)
    return list(value)


def conflict_group_settle(*, project: Project, user: AbstractBaseUser, example_ids: Any, label: Any,
                          field: str = "label") -> dict[str, Any]:
    """Give every member of a conflict group the label ``label`` (a name; for multi-label projects a list of
    names) as one review decision each, all or nothing; the members are settled. Bad input raises
    InvalidInput naming ``example_ids`` or ``field`` (the name the caller gave the label under) and writes
    nothing."""
    ids = _example_ids(example_ids)
    multi = project.is_multi_label
    if label is None or label == "" or label == []:
        raise InvalidInput([{"field": field, "message": f"{field} is required: the label every member gets"}])
    labels = validate_labels(label, task_multi=multi, known=label_map(project), field=field)
    before: dict[int, list[str]] = {}
    for example_id, name in ExampleLabel.objects.filter(example__project=project, example_id__in=ids).order_by(
        "label__position"
    ).values_list("example_id", "label__name"):
        before.setdefault(example_id, []).append(name)
    note = f"conflict group of {len(ids)}: settled to {', '.join(labels)}"
    rows = [{"example_id": example_id, "action": "relabel", **({"labels": labels} if multi else {"label": labels[0]}),
             "note": note} for example_id in ids]
    try:
        noise_decisions_apply(project=project, user=user, rows=rows)
    except InvalidInput as error:
        raise InvalidInput([{**e, "field": "example_ids"} if e.get("field") == "example_id" else e
                            for e in error.errors]) from None
    return {"settled": len(ids), "changed": sum(before.get(i) != labels for i in ids), "example_ids": ids,
            "label": None if multi else labels[0], "labels": labels}
