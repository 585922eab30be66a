"""Several annotators on one item: examples answered by two or more people, each person's latest answer next
to the consensus, agreement rates, and CROWDLAB's annotator quality as the last training stored it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import F, Max, Min, QuerySet

from annotator.db import in_chunks
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, Membership, Project
from training.agreement import label_set_agreement

AGREEMENT_SAMPLE = 2000  # overlapping examples the per-annotator rates are computed over (newest first)


def member_quality(project: Project) -> dict[str, dict[str, float | None]]:
    """Username -> ``annotator_quality`` and ``agreement_with_consensus`` as the last training stored them
    (None until a version was trained on items two or more people answered)."""
    return {
        username: {"annotator_quality": annotator_quality, "agreement_with_consensus": agreement}
        for username, annotator_quality, agreement in Membership.objects.filter(project=project)
        .values_list("user__username", "annotator_quality", "agreement_with_consensus")
    }


def overlapping_examples(project: Project) -> QuerySet:
    """Ids of examples answered by at least two users (reviewer decisions aside), newest first."""
    # MIN < MAX over the user ids says "two users or more" without COUNT(DISTINCT)'s sort per group.
    return (
        Annotation.objects.filter(example__project=project)
        .exclude(kind=AnnotationKind.REVIEW)
        .values("example_id")
        .annotate(first_user=Min("user_id"), last_user=Max("user_id"))
        .filter(first_user__lt=F("last_user"))
        .order_by("-example_id")
    )


def agreement_report(project: Project, example_ids: list[int], *, sample_ids: list[int]) -> dict[str, Any]:
    """Each user's latest answer on ``example_ids`` (one page) next to the consensus (the current label),
    and over ``sample_ids``: the share of agreeing answer pairs and each annotator's agreement with the
    consensus (:func:`training.agreement.label_set_agreement`), next to their CROWDLAB quality and agreement with
    the CROWDLAB consensus as the last training stored them (``Membership``)."""
    wanted = set(example_ids) | set(sample_ids)
    latest: dict[int, dict[str, tuple[str, ...]]] = defaultdict(dict)
    newest_answer: dict[int, int] = {}
    current: dict[int, tuple[str, ...]] = defaultdict(tuple)
    for part in in_chunks(wanted):
        for annotation_id, example_id, username, labels in (
            Annotation.objects.filter(example_id__in=part).exclude(kind=AnnotationKind.REVIEW)
            .order_by("id").values_list("id", "example_id", "user__username", "labels")
        ):
            latest[example_id][username] = tuple(labels)
            newest_answer[example_id] = annotation_id
        for example_id, name in (
            ExampleLabel.objects.filter(example_id__in=part).order_by("label__position")
            .values_list("example_id", "label__name")
        ):
            current[example_id] += (name,)
    reviewed = set(
        Annotation.objects.filter(example_id__in=example_ids, kind=AnnotationKind.REVIEW)
        .values_list("example_id", flat=True)
    )
    rates = label_set_agreement([latest.get(example_id, {}) for example_id in sample_ids],
                                [current.get(example_id, ()) for example_id in sample_ids])
    quality = member_quality(project)
    annotators = sorted(
        (
            {
                "username": u,
                "answered": rate["answered"],
                "agreement": rate["agreement"] or 0.0,
                "quality": quality.get(u, {}).get("annotator_quality"),
                "crowdlab_agreement": quality.get(u, {}).get("agreement_with_consensus"),
            }
            for u, rate in rates["annotators"].items() if rate["answered"]
        ),
        key=lambda row: (row["agreement"], row["username"]),
    )
    rows = list(Example.objects.filter(id__in=example_ids).values_list("id", "text", "consensus"))
    texts = {example_id: text for example_id, text, _ in rows}
    stored = {example_id: value for example_id, _, value in rows if value}
    items = []
    for example_id in example_ids:
        answers = latest.get(example_id, {})
        consensus = current.get(example_id, ())
        held = stored.get(example_id)
        from_crowdlab = bool(
            held and example_id not in reviewed and list(consensus) == held.get("labels")
            and newest_answer.get(example_id, 0) <= held.get("through_annotation", -1)
        )
        items.append({
            "example_id": example_id,
            "text": texts.get(example_id, ""),
            "answers": [
                {"username": u, "labels": list(v), "agrees": tuple(sorted(v)) == tuple(sorted(consensus))}
                for u, v in sorted(answers.items())
            ],
            "consensus": list(consensus),
            "reviewed": example_id in reviewed,
            "consensus_quality": held.get("quality") if from_crowdlab and held else None,
            "from_crowdlab": from_crowdlab,
        })
    return {
        "items": items,
        "annotators": annotators,
        "pair_agreement": rates["agreement_rate"],
        "n_pairs": rates["n_pairs"],
        "n_sampled": len(sample_ids),
        "has_quality": any(row["quality"] is not None for row in annotators),
    }
