"""The stable holdout: the labeled examples no model version trains on, so every version is measured, and two
versions are compared, on the same labels that none of them saw.

The rule (``HOLDOUT_RULE``, stored with every version):

- **Eligible** are examples whose *first* label was not picked by the queue for being informative: labels
  that came in with an import (seed and import data, or any labeled row of an import file or request) and
  answers to ``random`` queue items. Labels the queue asked for because the model was uncertain, a label
  looked wrong (``suspect``) or production drifted (``drift``), and labels given outside the queue (whoever
  picked those examples, it was not chance), always train: they are chosen for being hard or unusual, so
  measuring on them would understate the model on the traffic it serves. Annotations are append-only, so an
  example's first label, and with it its eligibility, never changes; a later relabel keeps it where it is.
- An eligible example is **held out** when the hash of its id falls below the share:
  ``int(sha256(f"holdout:{id}")[:16], 16) / 2**64 < HOLDOUT_SHARE`` (20%).
- At most ``HOLDOUT_MAX`` (2,000) are held out, those with the lowest hashes: beyond that, more held-out
  labels narrow the intervals little and are worth more as training data. New labels only ever move this
  cut down, so an example that trained once never joins the holdout later, and a version never trained on
  an example that a later version holds out.
- The holdout is **measured** when it has at least ``HOLDOUT_MIN`` (30) labels and at least two classes
  with ``HOLDOUT_MIN_PER_CLASS`` (3) or more; below that the version's ``holdout`` says "too few held-out
  labels to measure" and why, instead of a number. It is still held out (assignment never depends on
  its size), so the versions trained meanwhile stay comparable with later ones.

- **The queue keeps the holdout's examples for it** (:func:`reserved_for_holdout`): unlabeled examples whose
  hash falls below the cut are never offered as ``uncertain`` or ``drift`` items, and ``random`` items are
  drawn from them first. Every answer to such a random item therefore joins the holdout, so a project
  labeling through the queue grows its holdout by the mix's ``random`` share of every batch (3 of 50 with the
  default mix) instead of a fifth of that; and the holdout stays a uniform sample of the pool: without the
  reservation, uncertainty sampling would take the hard examples among the hashed ones first and leave the
  holdout the easy rest, overstating every version. At a million pool examples the queue asks the database
  which examples are kept (:func:`reserved_condition`: the same hash, computed in SQL, with the same
  floating-point cut), instead of hashing every id in Python.

A project whose labels all come from uncertainty sampling outside the queue has no holdout to measure on:
label some ``random`` queue items (the queue mix's ``random`` share) or import a random sample with labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import BinaryField, Min, Value
from django.db.models.expressions import Combinable
from django.db.models.lookups import GreaterThanOrEqual, LessThan

from annotator.db import IdDigest, in_chunks
from annotator.models import Annotation, AnnotationKind, Project, QueueItem

HOLDOUT_SHARE = 0.2
HOLDOUT_MAX = 2000
HOLDOUT_MIN = 30
HOLDOUT_MIN_PER_CLASS = 3
ELIGIBLE_ORIGINS = ("import", "random")
HOLDOUT_RULE: dict[str, Any] = {
    "name": "sha256-of-id-v1", "share": HOLDOUT_SHARE, "max": HOLDOUT_MAX, "eligible": list(ELIGIBLE_ORIGINS),
}
TOO_FEW = "too few held-out labels to measure"


def holdout_hash(example_id: int) -> float:
    """The example's fixed place in [0, 1): the first 64 bits of sha256("holdout:<id>")."""
    digest = hashlib.sha256(f"holdout:{int(example_id)}".encode()).hexdigest()
    return int(digest[:16], 16) / 2.0**64


def label_origins(project: Project, example_ids: Sequence[int] | None = None) -> dict[int, str]:
    """How each labeled example of the project (or of ``example_ids``) got its first label: ``import``,
    ``random`` (a random queue item), ``queue:<reason>`` (another queue reason) or the annotation kind
    (``label``, ``review``...) for a label given outside the queue."""
    if example_ids is not None:
        out: dict[int, str] = {}
        for chunk in in_chunks(example_ids):
            out.update(_origins(Annotation.objects.filter(example__project=project, example_id__in=chunk)))
        return out
    return _origins(Annotation.objects.filter(example__project=project))


def held_out_ids(project: Project, example_ids: Sequence[int], cut: float) -> set[int]:
    """Which of these labeled examples are in the holdout (eligible by their first label, hash below ``cut``)."""
    hashed = [pk for pk in example_ids if holdout_hash(pk) < cut]
    origins = label_origins(project, hashed) if hashed else {}
    return {pk for pk in hashed if origins.get(pk) in ELIGIBLE_ORIGINS}


def _origins(annotations: Any) -> dict[int, str]:
    first = annotations.values("example_id").annotate(first=Min("id"))
    rows = Annotation.objects.filter(id__in=first.values("first")).values_list(
        "example_id", "kind", "queue_item__reason")
    origins = {}
    for example_id, kind, reason in rows:
        if kind == AnnotationKind.IMPORT:
            origins[example_id] = "import"
        elif reason == QueueItem.Reason.RANDOM:
            origins[example_id] = "random"
        elif reason:
            origins[example_id] = f"queue:{reason}"
        else:
            origins[example_id] = str(kind)
    return origins


@dataclass
class HoldoutSplit:
    """Indices into the snapshot's examples: ``holdout`` (never trained on) and ``rest`` (the training side),
    and the record stored with the version (``n``, ``sources``, ``rule``...)."""

    holdout: np.ndarray
    rest: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def holdout_split(*, project: Project, example_ids: Sequence[int], sources: Sequence[str]) -> HoldoutSplit:
    """Split a snapshot's labeled examples by the holdout rule (see the module docstring)."""
    origins = label_origins(project)
    origin_of = [origins.get(int(pk), "label") for pk in example_ids]
    hashes = np.array([holdout_hash(pk) for pk in example_ids], dtype=np.float64)
    eligible = np.array([origin in ELIGIBLE_ORIGINS for origin in origin_of], dtype=bool)
    drawn = np.flatnonzero(eligible & (hashes < HOLDOUT_SHARE))
    cut = HOLDOUT_SHARE
    if len(drawn) > HOLDOUT_MAX:
        drawn = drawn[np.argsort(hashes[drawn], kind="stable")[:HOLDOUT_MAX]]
        cut = float(hashes[drawn].max())
    holdout = np.sort(drawn).astype(np.int64)
    rest = np.setdiff1d(np.arange(len(example_ids), dtype=np.int64), holdout)
    by_origin: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for i in holdout:
        by_origin[origin_of[i]] = by_origin.get(origin_of[i], 0) + 1
        by_source[sources[i]] = by_source.get(sources[i], 0) + 1
    record = {
        "n": len(holdout),
        "sources": by_origin,
        "example_sources": by_source,
        "eligible": int(eligible.sum()),
        "n_labeled": len(example_ids),
        "cut": cut,
        "rule": dict(HOLDOUT_RULE),
        "rule_text": (f"labels from imports and random queue items, held out by a hash of the example id "
                      f"({HOLDOUT_SHARE:.0%}, at most {HOLDOUT_MAX:,}); no version trains on them"),
    }
    return HoldoutSplit(holdout=holdout, rest=rest, record=record)


def holdout_cut(metrics: dict[str, Any] | None) -> float:
    """The hash below which examples are held out, as a version recorded it (the share until the holdout is
    full, then the largest hash it kept)."""
    record = (metrics or {}).get("holdout") or {}
    return float(record["cut"]) if same_rule(record) and record.get("cut") is not None else HOLDOUT_SHARE


def reserved_for_holdout(example_ids: Sequence[int], cut: float) -> np.ndarray:
    """Which of these (unlabeled) examples the queue keeps for the holdout: a boolean per id, hash below ``cut``.

    Labeled through a ``random`` queue item (or an import), such an example is held out; the queue never
    offers it for any other reason (see the module docstring)."""
    return np.array([holdout_hash(pk) < cut for pk in example_ids], dtype=bool)


def reserved_bound(cut: float) -> int:
    """The smallest 64-bit prefix ``u`` of a digest that is *not* below ``cut``: ``holdout_hash(id) < cut`` exactly
    when ``int(sha256("holdout:<id>")[:8]) < reserved_bound(cut)`` (0: nothing is reserved, 2**64: everything).

    :func:`holdout_hash` is ``float(u) / 2**64``: dividing by a power of two is exact, and float rounding is
    monotone, so the float comparison is an integer comparison against the first ``u`` whose float reaches
    ``cut * 2**64`` (found by bisection on the same float conversion Python does)."""
    target = float(cut) * 2.0**64
    low, high = 0, 2**64
    while low < high:
        middle = (low + high) // 2
        if float(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def reserved_condition(cut: float, field: str = "example_id", *, kept: bool = True) -> Combinable:
    """A filter for querysets: rows whose ``field`` (an example id) the queue keeps for the holdout
    (``kept=False``: the others). The same rule as :func:`reserved_for_holdout`, computed in the database.

    A digest is below the 8-byte bound exactly when its first 8 bytes are (bytes compare as unsigned
    big-endian numbers, and a digest whose first 8 bytes equal the bound is longer, so greater)."""
    bound = reserved_bound(cut)
    if bound >= 2**64 or bound == 0:
        return Value(kept == (bound > 0))
    digest = IdDigest("holdout:", field)  # the bytes holdout_hash reads its first 64 bits from
    limit = Value(bound.to_bytes(8, "big"), output_field=BinaryField())
    return LessThan(digest, limit) if kept else GreaterThanOrEqual(digest, limit)


def holdout_reason(labels: Sequence[Any], names: Sequence[str]) -> str | None:
    """Why the held-out labels cannot be measured (``None`` when they can). ``labels``: a name per example,
    or a list of names per example (multi-label)."""
    n = len(labels)
    if n < HOLDOUT_MIN:
        return f"{TOO_FEW}: {n} held out, at least {HOLDOUT_MIN} needed"
    counts = dict.fromkeys(names, 0)
    for value in labels:
        for name in value if isinstance(value, list) else [value]:
            counts[name] = counts.get(name, 0) + 1
    enough = [name for name, c in counts.items() if c >= HOLDOUT_MIN_PER_CLASS]
    if len(enough) < 2:
        return (f"{TOO_FEW}: fewer than two classes have {HOLDOUT_MIN_PER_CLASS} or more held-out labels "
                f"({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    return None


def same_rule(record: dict[str, Any] | None) -> bool:
    """Whether a version was trained under this holdout rule, so it never trained on today's holdout."""
    return bool(record) and (record or {}).get("rule") == HOLDOUT_RULE
