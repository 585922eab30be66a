"""The rebuild's reads over one version's scored pool, each bounded by the queue's size rather than the pool's.

A rebuild at a million pool examples must not load a million scores, embeddings or holdout hashes into the
worker (services.queue_policy). What it needs is:

- **counts** (:meth:`ScoredPool.census`, one aggregate query): examples kept for the holdout, the open pool,
  its production samples;
- **the top of a ranking** (:meth:`ScoredPool.top`): ``ORDER BY`` a stored score column ``LIMIT`` a few more
  rows than asked, the holdout's examples dropped from those rows in Python (by
  ``services.holdout.reserved_for_holdout`` itself), fetching further only if too many were dropped;
- **random draws** (:meth:`ScoredPool.sample`): the positions ``training.query.random_batch`` draws over
  the pool in example-id order, and the database returns only the rows at those positions (reading only the
  ranges of ids they fall in);
- **a bounded uniform sample** (:meth:`ScoredPool.uniform`, for cold start's k-means): the first rows by a
  hash of the version and the id.

Each but the bounded sample gives what the same rule over the whole pool in Python gave, with the pool in
example-id order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from annotator.db import IdDigest
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


# The census counts the pool per range of this many example ids, so that a random draw reads the ranges its
# positions fall in, not the whole pool.
ID_RANGE = 4096


@dataclass(frozen=True)
class Census:
    """How many unlabeled examples the version scored: ``reserved`` (kept for the holdout), ``open`` (all the
    others) and ``production`` (the open ones with source production); and the same per range of example ids
    (``ranges``: the range numbers, ``example_id // ID_RANGE``, ascending; ``reserved_in`` and ``open_in``:
    the counts in each)."""

    reserved: int
    open: int
    production: int
    ranges: np.ndarray
    reserved_in: np.ndarray
    open_in: np.ndarray


class ScoredPool:
    """The unlabeled examples ``version`` scored, with ``cut`` the holdout's hash cut (services.holdout).
    :meth:`census` first: the random draws use its counts."""

    def __init__(self, version: ModelVersion, cut: float) -> None:
        self.version = version
        self.cut = cut
        self.unlabeled: QuerySet[ExampleScore] = ExampleScore.objects.filter(
            model_version=version, example__label_source="")
        self._census: Census | None = None

    def census(self) -> Census:
        """One query: the counts per range of example ids (each row hashed once, in the database)."""
        kept = reserved_condition(self.cut)
        rows = list(self.unlabeled.annotate(range=F("example_id") / ID_RANGE).values("range").annotate(
            total=Count("id"), reserved=Count("id", filter=Q(kept)),
            production=Count("id", filter=Q(example__source="production") & ~Q(kept))).order_by("range")
            .values_list("range", "total", "reserved", "production"))
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        self._census = Census(reserved=int(table[:, 2].sum()), open=int((table[:, 1] - table[:, 2]).sum()),
                              production=int(table[:, 3].sum()), ranges=table[:, 0], reserved_in=table[:, 2],
                              open_in=table[:, 1] - table[:, 2])
        return self._census

    def top(self, order: Sequence[Any], n: int, fields: Sequence[str], *, exclude: Collection[int] = (),
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
        kept for the holdout) but ``exclude``, in example-id order: the rows at the drawn positions, in the
        order drawn. ``n_total`` is how many such rows there are; ``exclude`` holds open examples only."""
        from training.query import random_batch

        if n <= 0 or n_total <= 0:
            return []
        chosen = random_batch(n_total, n, seed=seed)
        return self.at_positions(chosen, fields, reserved=reserved, exclude=exclude)

    def at_positions(self, positions: np.ndarray, fields: Sequence[str], *, reserved: bool = False,
                     exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """The rows at these 0-based ``positions`` of the open (or ``reserved``) rows but ``exclude`` (open
        examples), in example-id order, returned in the order of ``positions``.

        The census says how many rows each range of ids holds, so the query reads only the ranges the
        positions fall in and numbers their rows (a position moves down by the rows of the ranges skipped)."""
        census = self._census or self.census()
        counts = (census.reserved_in if reserved else census.open_in).copy()
        left_out = np.asarray(sorted(exclude), dtype=np.int64) // ID_RANGE
        if left_out.size and not reserved:
            counts -= np.searchsorted(left_out, census.ranges, side="right") - np.searchsorted(
                left_out, census.ranges, side="left")
        ends = np.cumsum(counts)
        wanted = np.asarray(positions, dtype=np.int64)
        wanted = wanted[(wanted >= 0) & (wanted < (ends[-1] if ends.size else 0))]
        if wanted.size == 0:
            return []
        where = np.searchsorted(ends, wanted, side="right")  # the range each position falls in
        needed = np.unique(where)
        # Among the rows read, a position moves down by the rows of the ranges skipped before its own.
        skipped_rows = np.where(np.isin(np.arange(counts.size), needed), 0, counts)
        shift = dict(zip(wanted.tolist(), np.cumsum(skipped_rows)[where].tolist(), strict=True))
        in_ranges = Q()
        for number in census.ranges[needed].tolist():
            in_ranges |= Q(example_id__gte=number * ID_RANGE, example_id__lt=(number + 1) * ID_RANGE)
        queryset = self.unlabeled.filter(in_ranges).filter(reserved_condition(self.cut, kept=reserved))
        if exclude and not reserved:
            queryset = queryset.exclude(example_id__in=list(exclude))
        read = sorted({position - shift[position] + 1 for position in wanted.tolist()})
        rows = queryset.annotate(position=Window(RowNumber(), order_by=F("example_id").asc())).filter(
            position__in=read).values_list("position", *fields)
        by_position = {row[0] - 1: row[1:] for row in rows}
        return [by_position[p - shift[p]] for p in wanted.tolist() if p - shift[p] in by_position]

    def all_open(self, fields: Sequence[str], *, exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """Every open row not in ``exclude``, in example-id order (for a pool known to be small)."""
        queryset = self.unlabeled.filter(reserved_condition(self.cut, kept=False))
        if exclude:
            queryset = queryset.exclude(example_id__in=list(exclude))
        return list(queryset.order_by("example_id").values_list(*fields))

    def uniform(self, n_total: int, n: int, fields: Sequence[str], *, seed: int,
                exclude: Collection[int] = ()) -> list[tuple[Any, ...]]:
        """Up to ``n`` open rows not in ``exclude`` (``n_total`` of them), in example-id order: all of them when
        there are no more than ``n``, else a uniform sample: the first ``n`` by a hash of ``seed`` and the id
        (one hash per row in the database, the holdout's examples left out of the few thousand rows read)."""
        if n_total <= n:
            return self.all_open(fields, exclude=exclude)
        order = (IdDigest(f"sample:{seed}:", "example_id").asc(), "example_id")
        return sorted(self.top(order, n, fields, exclude=exclude))
