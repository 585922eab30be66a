"""The label-noise report: the newest version's open flags with the report header, the flags people settled,
the detector's precision as people measured it, and one page of issue rows."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat, Length, Replace, StrIndex
from django.db.models.lookups import Exact

from annotator.models import (
    Annotation,
    AnnotationKind,
    ExampleLabel,
    ExampleScore,
    ModelVersion,
    Project,
    QueueItem,
)
from annotator.selectors.projects import project_labels

# The detector's precision is measured over this many of the latest answered suspects ...
DETECTOR_WINDOW = 100
# ... and steers the suspect share (``services.queue_policy``) and the expected errors once at least this many
# were answered.
DETECTOR_MIN_REVIEWED = 10


def latest_noise_version(project: Project) -> ModelVersion | None:
    """The newest ready version whose scores include label quality."""
    return (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY, metrics__has_key="noise")
        .order_by("-number").first()
    )


def detector_precision(project: Project) -> dict[str, Any]:
    """The label-noise detector as people measured it: of the answered ``suspect`` items, how many had
    their label changed (a confirmed error). Overall, per model version (that flagged them) and over the
    latest ``DETECTOR_WINDOW`` answers (what steers the suspect share)."""
    answered = QueueItem.objects.filter(
        project=project, reason=QueueItem.Reason.SUSPECT, status=QueueItem.Status.DONE
    ).exclude(outcome="")
    changed = Q(outcome="changed")
    per_version = [
        {"model_version": number, "reviewed": n, "confirmed_errors": errors, "precision": _ratio(errors, n)}
        for number, n, errors in answered.values_list("model_version__number")
        .annotate(n=Count("id"), errors=Count("id", filter=changed)).order_by("model_version__number")
        .values_list("model_version__number", "n", "errors")
    ]
    reviewed = sum(row["reviewed"] for row in per_version)
    errors = sum(row["confirmed_errors"] for row in per_version)
    recent = list(answered.order_by("-done_at", "-id").values_list("outcome", flat=True)[:DETECTOR_WINDOW])
    recent_errors = sum(outcome == "changed" for outcome in recent)
    return {
        "reviewed": reviewed, "confirmed_errors": errors, "precision": _ratio(errors, reviewed),
        "recent": {"reviewed": len(recent), "confirmed_errors": recent_errors,
                   "precision": _ratio(recent_errors, len(recent))},
        "per_version": per_version,
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def noise_report(project: Project, *, label: str | None = None,
                 settled: bool = False) -> tuple[dict[str, Any], QuerySet[ExampleScore]]:
    """The report header and the open issues: scores of currently labeled examples the detector flags and
    people have not settled (``settled=True``: the flags people settled instead). Settled flags (people
    re-checked the label, ``Example.settled``) are counted apart in the header, with the detector's
    precision as people measured it."""
    version = latest_noise_version(project)
    detector = detector_precision(project)
    recent = detector.pop("recent", None) or {}
    if version is None:
        return ({"model_version": None, "estimated_noise_rate": None, "per_class": [], "settled": 0,
                 "detector": detector}, ExampleScore.objects.none())
    noise = version.metrics.get("noise", {})
    flagged = flagged_now(ExampleScore.objects.filter(model_version=version, is_issue=True))
    issues = flagged.filter(example__settled=settled).select_related("example").order_by("label_quality", "id")
    if label:
        issues = issues.filter(example__current_labels__label__name=label)
    header = {
        "model_version": version.number,
        "estimated_noise_rate": noise.get("estimated_noise_rate"),
        "per_class": noise.get("per_class", []),
        "n_labeled": noise.get("n"),
        "settled": flagged.filter(example__settled=True).count(),
        "detector": detector,
        "suspect_share": (project.queue_state or {}).get("mix", {}).get("suspect"),
    }
    if not settled:
        header["expected_errors"] = expected_errors(issues, recent)
    return header, issues


def flagged_now(scores: QuerySet[ExampleScore]) -> QuerySet[ExampleScore]:
    """The flags that still stand: the example is labeled, and its current labels are not (or no longer) the
    suggestion. Someone relabeled an example to what the detector suggested, through the queue or otherwise:
    the flag is answered, not an issue "given X, suggested X"."""
    current = ExampleLabel.objects.filter(example_id=OuterRef("example_id"))
    # The suggestion is one name, or (multi-label) the suggested names joined by commas in label order: the
    # current labels are the suggestion when none of them is missing from it and there are as many of them.
    within = StrIndex(Concat(Value(","), OuterRef("suggested_label"), Value(","), output_field=CharField()),
                      Concat(Value(","), F("label__name"), Value(","), output_field=CharField()))
    n_current = Coalesce(Subquery(current.order_by().values("example_id").annotate(n=Count("id")).values("n")),
                         0)
    n_suggested = Case(
        When(suggested_label="", then=Value(0)),
        default=Length("suggested_label") - Length(Replace("suggested_label", Value(","), Value(""))) + 1,
    )
    as_suggested = Q(~Exists(current.annotate(within=within).filter(within=0))) & Q(Exact(n_current, n_suggested))
    return scores.exclude(example__label_source="").exclude(as_suggested)


def expected_errors(issues: QuerySet[ExampleScore], recent: dict[str, Any]) -> dict[str, Any]:
    """How many of the open flags are likely real errors ("about N of these").

    Before people have re-checked enough flags the model says: a flagged label is wrong with probability
    ``1 - label_quality`` (cleanlab's self-confidence, the out-of-sample probability of the given label), so
    the expected count is their sum. Once ``DETECTOR_MIN_REVIEWED`` suspects were answered, the precision
    people measured over the latest answers replaces it (the model's probabilities are often overconfident
    on short, ambiguous text)."""
    totals = issues.aggregate(n=Count("id"), doubt=Sum(1.0 - F("label_quality")))
    n = totals["n"] or 0
    if recent.get("reviewed", 0) >= DETECTOR_MIN_REVIEWED:
        precision, basis = float(recent["precision"]), "reviews"
    else:
        precision, basis = (float(totals["doubt"] or 0.0) / n if n else None), "model"
    return {"open": n, "precision": None if precision is None else round(precision, 4),
            "n": None if precision is None else int(round(precision * n)), "basis": basis,
            "reviewed": int(recent.get("reviewed", 0))}


def settled_flags(project: Project, *, limit: int = 50) -> list[dict[str, Any]]:
    """Flags of the latest noise version that people already settled, most confirmed first."""
    version = latest_noise_version(project)
    if version is None:
        return []
    rows = (
        flagged_now(ExampleScore.objects.filter(model_version=version, is_issue=True, example__settled=True))
        .select_related("example").order_by("-example__confirmations", "label_quality", "id")[:limit]
    )
    scores = list(rows)
    given: dict[int, list[str]] = {}
    for example_id, name in ExampleLabel.objects.filter(example_id__in=[s.example_id for s in scores]).order_by(
        "label__position"
    ).values_list("example_id", "label__name"):
        given.setdefault(example_id, []).append(name)
    return [{"example_id": s.example_id, "text": s.example.text, "given": given.get(s.example_id, []),
             "suggested_label": s.suggested_label, "label_quality": s.label_quality,
             "confirmations": s.example.confirmations} for s in scores]


def noise_issue_rows(project: Project, scores: list[ExampleScore], *,
                     with_labelers: bool = False) -> list[dict[str, Any]]:
    """Rows of one page of the noise report (the API's issues and the review page's rows): text, given and
    suggested labels, quality, confidence, probabilities per label, settlement, and with ``with_labelers`` who
    labeled the example (the users whose answers count). Two queries for the page (three with labelers),
    whatever its size."""
    ids = [s.example_id for s in scores]
    names = project_labels(project)
    given: dict[int, list[str]] = defaultdict(list)
    for example_id, name in (
        ExampleLabel.objects.filter(example_id__in=ids).order_by("label__position")
        .values_list("example_id", "label__name")
    ):
        given[example_id].append(name)
    labelers: dict[int, list[str]] = defaultdict(list)
    if with_labelers:
        for example_id, username in (
            Annotation.objects.filter(example_id__in=ids).exclude(kind=AnnotationKind.REVIEW)
            .order_by("-id").values_list("example_id", "user__username")
        ):
            if username not in labelers[example_id]:
                labelers[example_id].append(username)
    multi = project.is_multi_label
    rows = []
    for score in scores:
        suggested = [s for s in score.suggested_label.split(",") if s] if multi else [score.suggested_label]
        probs = dict(zip(names, score.probs, strict=False))
        rows.append({
            "example_id": score.example_id,
            "external_id": score.example.external_id,
            "text": score.example.text,
            "given": given.get(score.example_id, []),
            "suggested": suggested,
            "suggested_label": score.suggested_label,
            "label_quality": score.label_quality,
            "suggested_prob": max((probs.get(s, 0.0) for s in suggested), default=None),
            "confidence": score.confidence,
            "probs": probs,
            "settled": score.example.settled,
            "confirmations": score.example.confirmations,
            "labelers": labelers.get(score.example_id, []),
        })
    return rows
