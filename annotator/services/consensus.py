"""Several people per item: CROWDLAB consensus and annotator quality, and ActiveLab's choice between
another label for a labeled item and a first label for an unlabeled one.

Both run at training time on the out-of-sample probabilities of the train job, through the pure functions of
:mod:`training.noise` (cleanlab's ``get_label_quality_multiannotator`` and ``get_active_learning_scores``):

- :func:`consensus_update` stores, for every item two or more people answered, the CROWDLAB consensus on
  ``Example.consensus`` (the current-label rule of :mod:`annotator.services.annotations` takes it until a
  newer answer arrives) and each member's estimated quality on ``Membership``;
- :func:`activelab_candidates` ranks labeled items (another label) and unlabeled ones (a first label) on
  ActiveLab's one scale, for the queue rebuild of projects that collect several answers per item.

Single-label projects only: CROWDLAB and ActiveLab take one class per answer. On a multi-label project both
do nothing (``consensus_update`` says so in its summary, ``activelab_candidates`` returns no item).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import transaction

from annotator.db import in_chunks
from annotator.models import AnnotationKind, Example, Membership, ModelVersion, Project
from annotator.services.annotations import Vote, current_labels_from, refresh_current_labels, votes_of

SINGLE_LABEL_ONLY = "CROWDLAB and ActiveLab take one class per answer: not run on a multi-label project"
ONE_ANNOTATOR = ("one annotator per item (overlap 1): the current label follows the plain rule, so a re-check "
                 "by a person is final and is never overruled by the model")


def latest_answers(votes: Sequence[Vote], *, through: int | None = None) -> dict[int, Vote]:
    """Each person's latest answer (review decisions aside), by user id; only annotations up to ``through``
    when given."""
    latest: dict[int, Vote] = {}
    for vote in sorted(votes, key=lambda v: v.annotation_id):
        if vote.kind == AnnotationKind.REVIEW or (through is not None and vote.annotation_id > through):
            continue
        latest[vote.user_id] = vote
    return latest


def _answer_matrix(answers: Sequence[dict[int, Vote]], index: dict[str, int]) -> tuple[np.ndarray, list[int]]:
    """(items x annotators) class indices, NaN where a person did not answer; and the user id of each column.
    An answer naming no known class (or several) is left out."""
    users = sorted({user for row in answers for user in row})
    column = {user: j for j, user in enumerate(users)}
    matrix = np.full((len(answers), len(users)), np.nan)
    for i, row in enumerate(answers):
        for user, vote in row.items():
            if len(vote.labels) == 1 and vote.labels[0] in index:
                matrix[i, column[user]] = index[vote.labels[0]]
    return matrix, users


def consensus_update(
    *,
    project: Project,
    example_ids: list[int],
    probs: np.ndarray,
    names: list[str],
    max_annotation_id: int | None = None,
) -> dict[str, Any]:
    """CROWDLAB over the items two or more people answered; store consensus and annotator quality.

    Parameters
    ----------
    example_ids : the labeled examples of the training snapshot, in the order of ``probs``' rows.
    probs : np.ndarray, shape (len(example_ids), len(names))
        Out-of-sample probabilities of those examples (the train job's ``_label_noise``).
    names : the label names in column order (the project's label positions).
    max_annotation_id : the snapshot's highest annotation id; later answers are left out, so the consensus
        is what the snapshot knew and any later answer hands the item back to the majority rule.

    For every example answered by at least two people (each person's latest non-review answer), writes
    ``Example.consensus = {"labels": [name], "quality": consensus quality, "through_annotation": the newest
    annotation id of the example at snapshot time}``; clears it on the project's other examples; stores each
    member's ``annotator_quality`` and ``agreement_with_consensus`` (null for members with no such answers);
    re-derives the current labels of every example whose consensus changed. One transaction.

    Returns
    -------
    dict
        ``method`` (``"crowdlab"``, ``"none"`` when no item has two answers, ``"skipped"`` on a multi-label
        project), ``n_items``, ``n_annotators``, ``agreement_rate`` (share of agreeing answer pairs, None
        without pairs), ``n_overrides_majority`` (items where the consensus differs from the majority rule),
        ``n_cleared`` and ``annotators`` (username -> quality and agreement with the consensus).
    """
    summary: dict[str, Any] = {"method": "none", "n_items": 0, "n_annotators": 0, "agreement_rate": None,
                               "n_overrides_majority": 0, "n_cleared": 0, "annotators": {}}
    if project.is_multi_label:
        return {**summary, "method": "skipped", "note": SINGLE_LABEL_ONLY}
    if int(project.setting("overlap")) <= 1:
        # A seed label and its re-check are two people too, but CROWDLAB would let the model's opinion overrule
        # the re-check and the same flag would come back every version: consensus is for overlap projects.
        stale = list(Example.objects.filter(project=project, consensus__isnull=False).values_list("id", flat=True))
        if stale:
            with transaction.atomic():
                for chunk in in_chunks(stale):
                    Example.objects.filter(id__in=chunk).update(consensus=None)
                refresh_current_labels(stale, project=project)
        return {**summary, "method": "skipped", "note": ONE_ANNOTATOR, "n_cleared": len(stale)}
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(example_ids), len(names)):
        raise ValueError(f"probs must have shape ({len(example_ids)}, {len(names)}), got {p.shape}")
    from training.multiannotator import annotator_agreement

    index = {name: i for i, name in enumerate(names)}
    votes = votes_of(list(example_ids))
    rows: list[int] = []
    items: list[int] = []
    answers: list[dict[int, Vote]] = []
    through: dict[int, int] = {}
    for row, example_id in enumerate(example_ids):
        history = [v for v in votes.get(example_id, [])
                   if max_annotation_id is None or v.annotation_id <= max_annotation_id]
        latest = latest_answers(history)
        if len(latest) < 2:
            continue
        rows.append(row)
        items.append(example_id)
        answers.append(latest)
        through[example_id] = max(v.annotation_id for v in history)

    consensus: dict[int, dict[str, Any]] = {}
    quality: dict[int, tuple[float | None, float | None]] = {}
    if items:
        matrix, users = _answer_matrix(answers, index)
        result = annotator_agreement(matrix, p[rows], annotator_ids=[str(u) for u in users])
        for i, example_id in enumerate(items):
            label = result["consensus_label"][i]
            if label is None:
                continue
            consensus[example_id] = {"labels": [names[label]], "quality": result["consensus_quality"][i],
                                     "through_annotation": through[example_id]}
            majority, _ = current_labels_from(list(answers[i].values()))
            summary["n_overrides_majority"] += majority != (names[label],)
        for user in users:
            quality[user] = (result["annotator_quality"][str(user)],
                             result["annotator_agreement_with_consensus"][str(user)])
        summary.update(method=result["method"], n_items=len(consensus), n_annotators=len(users),
                       agreement_rate=result["agreement_rate"])

    with transaction.atomic():
        before = dict(Example.objects.filter(project=project, consensus__isnull=False)
                      .values_list("id", "consensus"))
        cleared = [example_id for example_id in before if example_id not in consensus]
        changed = [example_id for example_id, value in consensus.items() if before.get(example_id) != value]
        for chunk in in_chunks(cleared):
            Example.objects.filter(id__in=chunk).update(consensus=None)
        updates = [Example(id=example_id, consensus=consensus[example_id]) for example_id in changed]
        Example.objects.bulk_update(updates, ["consensus"], batch_size=1000)
        if items:
            members = list(Membership.objects.filter(project=project).select_related("user"))
            for member in members:
                member.annotator_quality, member.agreement_with_consensus = quality.get(member.user_id, (None, None))
                if member.user_id in quality:
                    summary["annotators"][member.user.username] = {
                        "annotator_quality": member.annotator_quality,
                        "agreement_with_consensus": member.agreement_with_consensus,
                    }
            Membership.objects.bulk_update(members, ["annotator_quality", "agreement_with_consensus"])
        refresh_current_labels(cleared + changed, project=project)
    summary["n_cleared"] = len(cleared)
    return summary


def activelab_candidates(
    *,
    project: Project,
    version: ModelVersion,
    labeled_probs: dict[int, np.ndarray],
    unlabeled_ids: list[int],
    unlabeled_probs: np.ndarray,
    n: int,
) -> list[tuple[int, float, str]]:
    """Up to ``n`` items most worth a label, best first: ``(example_id, priority, explanation)``.

    Labeled items (``labeled_probs``: example id -> out-of-sample probabilities from ``version``) compete for
    another label, unlabeled ones (``unlabeled_ids`` with ``unlabeled_probs``, shape (len(unlabeled_ids), k))
    for a first label, on ActiveLab's one scale (:func:`training.multiannotator.activelab_scores`); ``priority`` is
    ``1 - score``, so higher is more valuable. Settled examples (people re-checked them) are not offered for
    another label. The answer matrix is every person's latest non-review answer now, not at the snapshot:
    an answer given since the training counts. Ties go to the lower example id. Multi-label project: [].
    """
    if n <= 0 or project.is_multi_label:
        return []
    from training.multiannotator import activelab_scores

    names = list(project.label_classes.order_by("position").values_list("name", flat=True))
    index = {name: i for i, name in enumerate(names)}
    k = len(names)
    # Settled items still inform ActiveLab's estimate of the annotators; they are only never offered again.
    settled = {pk for chunk in in_chunks(labeled_probs)
               for pk in Example.objects.filter(id__in=chunk, settled=True).values_list("id", flat=True)}
    candidates = list(labeled_probs)
    votes = votes_of(candidates)
    labeled_ids: list[int] = []
    answers: list[dict[int, Vote]] = []
    for example_id in candidates:
        latest = latest_answers(votes.get(example_id, []))
        if any(len(v.labels) == 1 and v.labels[0] in index for v in latest.values()):
            labeled_ids.append(example_id)
            answers.append(latest)
    matrix, _ = _answer_matrix(answers, index)
    probs = (np.vstack([np.asarray(labeled_probs[i], dtype=np.float64) for i in labeled_ids]) if labeled_ids
             else np.zeros((0, k)))
    pool = np.asarray(unlabeled_probs, dtype=np.float64).reshape(len(unlabeled_ids), -1) if unlabeled_ids \
        else np.zeros((0, k))
    if len(unlabeled_ids) != pool.shape[0]:
        raise ValueError("one row of unlabeled_probs per unlabeled id")
    labeled_scores, unlabeled_scores = activelab_scores(
        matrix if labeled_ids else None, probs if labeled_ids else None, pool if unlabeled_ids else None)

    scores = np.concatenate([labeled_scores, unlabeled_scores])
    ids = np.array(labeled_ids + [int(example_id) for example_id in unlabeled_ids], dtype=np.int64)
    out: list[tuple[int, float, str]] = []
    for position in np.lexsort((ids, scores)):
        if len(out) == n:
            break
        score, example_id = float(scores[position]), int(ids[position])
        if example_id in settled:
            continue
        if position < len(labeled_ids):
            given = [v.labels[0] for v in answers[position].values() if len(v.labels) == 1]
            tally = ", ".join(f"{name} ×{given.count(name)}" for name in sorted(set(given), key=given.index))
            explanation = (f"another label: ActiveLab {score:.2f} ({len(given)} answer{'s' if len(given) != 1 else ''}"
                           f" so far: {tally}; model v{version.number})")
        else:
            explanation = (f"a first label: ActiveLab {score:.2f} (model v{version.number} confidence "
                           f"{pool[position - len(labeled_ids)].max():.2f})")
        out.append((example_id, 1.0 - score, explanation))
    return out
