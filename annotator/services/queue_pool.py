"""The rebuild's reads over one version's scored pool, each bounded by the queue's size rather than the pool's.

A rebuild at a million pool examples must not load a million scores, embeddings or holdout hashes into the
worker (services.queue_policy). What it needs is:

- **counts** (:meth:`ScoredPool.census`, one aggregate query): examples kept for the holdout, the open pool,
  its production samples;
- **the top of a ranking** (:meth:`ScoredPool.top`): ``ORDER BY`` a stored score column ``LIMIT`` a few more
  rows than asked, the holdout's examples dropped from those rows in Python (by
  ``services.holdout.reserved_for_holdout`` itself), fetching further only if too many were dropped;
- **a uniform sample** (:meth:`ScoredPool.sample`): the positions ``training.query.random_batch`` draws over
  the pool in example-id order, and the database returns only the rows at those positions.

Each gives what the same rule over the whole pool in Python gave, with the pool in example-id order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from annotator.models import ExampleScore, ModelVersion
from annotator.services.holdout import reserved_condition, reserved_for_holdout

# How a query strategy ranks the pool, as stored columns (services.scoring keeps them with every score): the
# strategy's score descending, ties to the higher entropy, then the lower example id, as
# training.query.rank_by_uncertainty breaks them. margin is stored as the margin itself (best minus second
# best), the strategy's score is one minus it; least confidence is one minus the stored confidence.
STRATEGY_ORDER: dict[str, tuple[str, ...]] = {
    "entropy": ("-entropy", "example_id"),
    "margin": ("margin", "-entropy", "example_id"),
    "least_confidence": ("confidence", "-entropy", "example_id"),
}
# Drift: the production samples the model is least sure about.
DRIFT_ORDER = ("-entropy", "example_id")
# ActiveLab scores a first label by the model's (temperature-scaled) top probability: the least confident first.
ACTIVELAB_ORDER = ("confidence", "example_id")


@dataclass(frozen=True)
class Census:
    """How many unlabeled examples the version scored: ``reserved`` (kept for the holdout), ``open`` (all the
    others) and ``production`` (the open ones with source production)."""

    reserved: int
    open: int
    production: int


class ScoredPool:
    """The unlabeled examples ``version`` scored, with ``cut`` the holdout's hash cut (services.holdout)."""

    def __init__(self, version: ModelVersion, cut: float) -> None:
        self.version = version
        self.cut = cut
        self.unlabeled: QuerySet[ExampleScore] = ExampleScore.objects.filter(
            model_version=version, example__label_source="")

    def census(self) -> Census:
        kept = reserved_condition(self.cut)
        counts = self.unlabeled.aggregate(
            total=Count("id"), reserved=Count("id", filter=Q(kept)),
            production=Count("id", filter=Q(example__source="production") & ~Q(kept)))
        return Census(reserved=counts["reserved"], open=counts["total"] - counts["reserved"],
                      production=counts["production"])

    def top(self, order: Sequence[str], n: int, fields: Sequence[str], *, exclude: Collection[int] = (),
            production: bool = False) -> list[tuple[Any, ...]]:
        """The first ``n`` open rows (``fields``, the first of them ``example_id``) in ``order``, leaving out
        ``exclude`` and the examples kept for the holdout."""
        if n <= 0:
            return []
        queryset = self.unlabeled.filter(example__source="production") if production else self.unlabeled
        queryset = queryset.order_by(*order).values_list(*fields)
        # About a share ``cut`` of the rows are kept for the holdout; ask for enough that n remain, and more
        # only when the kept ones happen to crowd the top.
        limit = int((n + len(exclude)) / (1.0 - min(self.cut, 0.9))) + 64
        while True:
            rows = list(queryset[:limit])
            kept = reserved_for_holdout([row[0] for row in rows], self.cut)
            out = [row for row, keep in zip(rows, kept, strict=True) if not keep and row[0] not in exclude]
            if len(out) >= n or len(rows) < limit:
                return out[:n]
            limit *= 4

    def sample(self, n_total: int, n: int, fields: Sequence[str], *, seed: int, reserved: bool = False,
               exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """``training.query.random_batch(n_total, n, seed=seed)`` over the open rows (``reserved``: the rows
        kept for the holdout) not in ``exclude``, in example-id order: the rows at the drawn positions, in
        the order drawn. ``n_total`` is how many such rows there are (from :meth:`census`)."""
        from training.query import random_batch

        if n <= 0 or n_total <= 0:
            return []
        chosen = random_batch(n_total, n, seed=seed)
        return self.at_positions(chosen, fields, reserved=reserved, exclude=exclude)

    def at_positions(self, positions: np.ndarray, fields: Sequence[str], *, reserved: bool = False,
                     exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """The rows at these 0-based ``positions`` of the open (or ``reserved``) rows not in ``exclude``, in
        example-id order, in the order of ``positions``."""
        queryset = self.unlabeled.filter(reserved_condition(self.cut, kept=reserved))
        if exclude:
            queryset = queryset.exclude(example_id__in=list(exclude))
        wanted = sorted({int(p) + 1 for p in positions})
        rows = queryset.annotate(position=Window(RowNumber(), order_by=F("example_id").asc())).filter(
            position__in=wanted).values_list("position", *fields)
        by_position = {row[0] - 1: row[1:] for row in rows}
        return [by_position[int(p)] for p in positions if int(p) in by_position]

    def all_open(self, fields: Sequence[str], *, exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """Every open row not in ``exclude``, in example-id order (for a pool known to be small)."""
        queryset = self.unlabeled.filter(reserved_condition(self.cut, kept=False))
        if exclude:
            queryset = queryset.exclude(example_id__in=list(exclude))
        return list(queryset.order_by("example_id").values_list(*fields))

    def uniform(self, n_total: int, n: int, fields: Sequence[str], *, seed: int,
                exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """Up to ``n`` open rows not in ``exclude``, in example-id order: all of them when there are no more
        than ``n`` (``n_total`` of them), else a uniform sample drawn with ``seed``."""
        if n_total <= n:
            return self.all_open(fields, exclude=exclude)
        positions = np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
        return self.at_positions(positions, fields, exclude=exclude)
