"""The team page: per annotator, how much they answered and how fast, how well they agree with the consensus
and with each other (Cohen's kappa per pair, Fleiss' kappa for the team), CROWDLAB's quality as the last
training stored it, and how many of their labels a review later changed.

Every number comes from a handful of grouped queries over the project's annotations; the maths is in
:mod:`training.agreement`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, JSONField, OuterRef, Q, Subquery

from annotator.db import in_chunks, is_postgres
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, Membership, Project, QueueItem
from annotator.selectors.consensus import overlapping_examples
from training.agreement import (
    cohen_kappa_pairs,
    label_set_agreement,
    median_answer_seconds,
    team_fleiss_kappa,
)

# The overlapping items the agreement numbers are computed over (the newest ones), as the agreement page does.
TEAM_SAMPLE = 5000
# No lease start is stored per answer, so the time per item is the gap since the same person's previous
# answer; a longer gap is a break (lunch, the next day), not time spent on the item, and is left out.
BREAK_SECONDS = 600
ANSWER_KINDS = ("queue", "manual", "review", "import")  # the columns of "answers"; other kinds are added after


def _answer_counts(project: Project) -> dict[int, dict[str, int]]:
    """User id -> answers by kind: ``queue`` (label or relabel through a queue item), ``manual`` (label or
    relabel without one), ``review``, ``import``, and any other kind under its own name. One grouped query."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ANSWER_KINDS, 0))
    rows = (Annotation.objects.filter(example__project=project).order_by()
            .values("user_id", "kind").annotate(n=Count("id"), queued=Count("queue_item_id")))
    for row in rows:
        mine = counts[row["user_id"]]
        if row["kind"] in (AnnotationKind.LABEL, AnnotationKind.RELABEL):
            mine["queue"] += row["queued"]
            mine["manual"] += row["n"] - row["queued"]
        else:
            mine[row["kind"]] = mine.get(row["kind"], 0) + row["n"]
    return counts


_GAPS = """
    WITH answers AS (
        SELECT a.user_id, a.created_at,
               LAG(a.created_at) OVER (PARTITION BY a.user_id ORDER BY a.created_at, a.id) AS previous
        FROM {annotation} a JOIN {example} e ON e.id = a.example_id
        WHERE e.project_id = %s AND a.kind NOT IN ('import', 'review')
    ), gaps AS (
        SELECT user_id, {gap} AS gap FROM answers WHERE previous IS NOT NULL
    )
"""
_TABLES = {"annotation": Annotation._meta.db_table, "example": Example._meta.db_table}
_PG_GAP = "EXTRACT(EPOCH FROM created_at - previous)"
_SQLITE_GAP = "(julianday(created_at) - julianday(previous)) * 86400.0"


def _seconds_per_item(project: Project) -> dict[int, dict[str, Any]]:
    """User id -> ``{"median_seconds", "timed"}``: the median gap between consecutive answers up to
    :data:`BREAK_SECONDS`, and how many gaps that median is over. Imports and review decisions are left out:
    both are written many at a time, so their gaps say nothing of the time an item takes. PostgreSQL takes
    the median itself; SQLite (the embedded default) hands back the gaps."""
    out: dict[int, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(_GAPS.format(gap=_PG_GAP, **_TABLES) + """
                SELECT user_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap), COUNT(*)
                FROM gaps WHERE gap BETWEEN 0 AND %s GROUP BY user_id""", [project.id, BREAK_SECONDS])
            for user_id, median, n in cursor.fetchall():
                out[user_id] = {"median_seconds": round(float(median), 3), "timed": n}
            return out
        cursor.execute(_GAPS.format(gap=_SQLITE_GAP, **_TABLES) + "SELECT user_id, gap FROM gaps", [project.id])
        gaps: dict[int, list[float]] = defaultdict(list)
        for user_id, gap in cursor.fetchall():
            gaps[user_id].append(float(gap))
    for user_id, values in gaps.items():
        kept = [g for g in values if 0 <= g <= BREAK_SECONDS]
        median = median_answer_seconds(kept, cap=BREAK_SECONDS)
        # julianday() is a float of days: keep milliseconds, not its rounding noise.
        out[user_id] = {"median_seconds": None if median is None else round(median, 3), "timed": len(kept)}
    return out


def _changed_by_review(project: Project) -> dict[int, dict[str, int]]:
    """User id -> ``{"reviewed", "changed"}`` over their answers (review decisions aside): an answer is
    reviewed when a later review decision, or someone else's answer to a ``suspect`` re-check, exists on the
    same example, and changed when the latest such correction gives other labels."""
    corrections = Q(kind=AnnotationKind.REVIEW) | Q(queue_item__reason=QueueItem.Reason.SUSPECT)
    corrected_examples = (Annotation.objects.filter(corrections, example__project=project)
                          .order_by().values("example_id"))
    latest_correction = (
        Annotation.objects.filter(example_id=OuterRef("example_id"), id__gt=OuterRef("id"))
        .filter(Q(kind=AnnotationKind.REVIEW)
                | (Q(queue_item__reason=QueueItem.Reason.SUSPECT) & ~Q(user_id=OuterRef("user_id"))))
        .order_by("-id").values("labels")[:1]
    )
    rows = (
        Annotation.objects.filter(example_id__in=Subquery(corrected_examples))
        .exclude(kind=AnnotationKind.REVIEW)
        .annotate(correction=Subquery(latest_correction, output_field=JSONField()))
        .filter(correction__isnull=False)
        .values_list("user_id", "labels", "correction")
    )
    out: dict[int, dict[str, int]] = defaultdict(lambda: {"reviewed": 0, "changed": 0})
    for user_id, labels, correction in rows:
        out[user_id]["reviewed"] += 1
        out[user_id]["changed"] += sorted(labels or []) != sorted(correction or [])
    return out


def _overlap(project: Project) -> tuple[list[dict[str, tuple[str, ...]]], list[tuple[str, ...]]]:
    """Each user's latest answer (review decisions aside) on the newest :data:`TEAM_SAMPLE` items two or
    more people answered, keyed by user id as text, next to each item's current label."""
    sample = list(overlapping_examples(project).values_list("example_id", flat=True)[:TEAM_SAMPLE])
    latest: dict[int, dict[str, tuple[str, ...]]] = defaultdict(dict)
    current: dict[int, tuple[str, ...]] = defaultdict(tuple)
    for part in in_chunks(sample):
        for example_id, user_id, labels in (
            Annotation.objects.filter(example_id__in=part).exclude(kind=AnnotationKind.REVIEW)
            .order_by("id").values_list("example_id", "user_id", "labels")
        ):
            latest[example_id][str(user_id)] = tuple(labels)
        for example_id, name in (ExampleLabel.objects.filter(example_id__in=part).order_by("label__position")
                                 .values_list("example_id", "label__name")):
            current[example_id] += (name,)
    answers = [latest[example_id] for example_id in sample if len(latest[example_id]) >= 2]
    references = [current[example_id] for example_id in sample if len(latest[example_id]) >= 2]
    return answers, references


def _rounded(value: float | None) -> float | None:
    """Six decimals: 13/40 computed in floating point reads 0.325, not 0.32499999999999996 (which a page
    would round down)."""
    return None if value is None else round(value, 6)


def team_report(project: Project) -> dict[str, Any]:
    """Per annotator and for the team; see the module docstring. ``annotators`` lists every member and
    everyone who answered, by username; ``pairs`` holds Cohen's kappa per pair of annotators (usernames)."""
    members = {user_id: {"role": role, "quality": quality, "crowdlab_agreement": agreement}
               for user_id, role, quality, agreement in Membership.objects.filter(project=project)
               .values_list("user_id", "role", "annotator_quality", "agreement_with_consensus")}
    counts = _answer_counts(project)
    timing = _seconds_per_item(project)
    reviewed = _changed_by_review(project)
    answers, references = _overlap(project)
    rates = label_set_agreement(answers, references)["annotators"]
    pairs = cohen_kappa_pairs(answers)
    user_ids = set(members) | set(counts)
    names = dict(get_user_model().objects.filter(id__in=user_ids).values_list("id", "username"))
    rows = []
    for user_id in user_ids:
        mine = counts.get(user_id, dict.fromkeys(ANSWER_KINDS, 0))
        labels = sum(n for kind, n in mine.items() if kind != "review")
        overlap = rates.get(str(user_id), {"answered": 0, "agreement": None})
        review = reviewed.get(user_id, {"reviewed": 0, "changed": 0})
        member = members.get(user_id, {"role": None, "quality": None, "crowdlab_agreement": None})
        rows.append({
            "username": names.get(user_id, f"user {user_id}"),
            "role": member["role"],
            "answers": sum(mine.values()),
            "by_kind": mine,
            "median_seconds": timing.get(user_id, {}).get("median_seconds"),
            "timed_answers": timing.get(user_id, {}).get("timed", 0),
            "overlap_items": overlap["answered"],
            "agreement_with_consensus": overlap["agreement"] if overlap["answered"] else None,
            "crowdlab_quality": member["quality"],
            "crowdlab_agreement": member["crowdlab_agreement"],
            "labels": labels,
            "reviewed": review["reviewed"],
            "changed_by_review": review["changed"],
            "changed_share": review["changed"] / labels if labels else None,
        })
    rows.sort(key=lambda row: (-row["answers"], row["username"]))
    kinds = list(ANSWER_KINDS) + sorted({k for row in rows for k in row["by_kind"]} - set(ANSWER_KINDS))
    for row in rows:
        row["by_kind"] = {kind: row["by_kind"].get(kind, 0) for kind in kinds}
    return {
        "annotators": rows,
        "answer_kinds": kinds,
        "pairs": sorted(
            ({**pair, "a": min(a, b), "b": max(a, b), "kappa": _rounded(pair["kappa"]),
              "agreement": _rounded(pair["agreement"])}
             for pair in pairs
             for a, b in [(names.get(int(pair["a"]), pair["a"]), names.get(int(pair["b"]), pair["b"]))]),
            key=lambda pair: (pair["a"], pair["b"]),
        ),
        "fleiss_kappa": _rounded(team_fleiss_kappa(answers)),
        "overlap_items": len(answers),
        "overlap_sample": TEAM_SAMPLE,
        "break_seconds": BREAK_SECONDS,
    }
