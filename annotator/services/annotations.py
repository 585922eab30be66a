"""Annotations are append-only; an example's current label is derived from them.

The rule (ARCHITECTURE.md), :func:`current_labels_from`:

1. the latest reviewer decision wins;
2. otherwise, when the example has a stored CROWDLAB consensus (``Example.consensus``, written at training
   time by :mod:`annotator.services.consensus` for items two or more people answered) and no answer other
   than a review decision is newer than the consensus's ``through_annotation``, the consensus labels win:
   each answer weighed by its annotator's estimated quality, and the model's out-of-sample probabilities.
   The consensus is taken only while two or more people have answered and someone's latest answer gives
   those labels (people label; the model only weighs their answers);
3. otherwise each annotator's latest answer counts once and the most frequent answer wins, the most recent
   one breaking ties.

Single-annotator projects and items with one answer never have a consensus, so rule 3 (today's rule) is
theirs; a new answer after the consensus was computed hands the item back to rule 3 until the next training.

Whether the current label is *settled* is derived from the same annotations (:func:`settlement_from`):
people re-checked it, so the label-noise detector's flag on it is answered and it is not queued as
``suspect`` again until new evidence arrives.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from annotator import db
from annotator.db import in_chunks
from annotator.errors import InvalidInput
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, LabelClass, Project, QueueItem


@dataclass(frozen=True)
class Vote:
    annotation_id: int
    user_id: int
    kind: str
    labels: tuple[str, ...]
    # The answer to a ``suspect`` queue item: someone looked again because the detector doubted the label.
    recheck: bool = False


def current_labels_from(
    votes: Sequence[Vote], consensus: Mapping[str, Any] | None = None
) -> tuple[tuple[str, ...], str]:
    """The current labels and the kind of annotation they come from; ``((), "")`` when unlabeled.

    ``consensus`` is the example's stored CROWDLAB consensus (``Example.consensus``: ``labels`` and
    ``through_annotation``), or None; see the module docstring for the rule.
    """
    if not votes:
        return (), ""
    ordered = sorted(votes, key=lambda v: v.annotation_id)
    reviews = [v for v in ordered if v.kind == AnnotationKind.REVIEW]
    if reviews:
        return reviews[-1].labels, AnnotationKind.REVIEW
    latest_per_user: dict[int, Vote] = {}
    for vote in ordered:
        latest_per_user[vote.user_id] = vote
    agreed = _consensus_vote(latest_per_user, consensus)
    if agreed is not None:
        return agreed.labels, agreed.kind
    counts = Counter(v.labels for v in latest_per_user.values())
    best = max(counts.values())
    # Among the most frequent answers, the one given most recently.
    for vote in sorted(latest_per_user.values(), key=lambda v: v.annotation_id, reverse=True):
        if counts[vote.labels] == best:
            return vote.labels, vote.kind
    raise AssertionError("unreachable")


def _consensus_vote(latest_per_user: dict[int, Vote], consensus: Mapping[str, Any] | None) -> Vote | None:
    """The most recent latest answer that gives the consensus labels, while the consensus holds; else None."""
    if not consensus or len(latest_per_user) < 2:
        return None
    labels, through = consensus.get("labels"), consensus.get("through_annotation")
    if not isinstance(labels, list) or not labels or not isinstance(through, int):
        return None
    if any(v.annotation_id > through for v in latest_per_user.values()):
        return None  # a newer answer is evidence the consensus has not weighed
    wanted = tuple(labels)
    agreeing = [v for v in latest_per_user.values() if v.labels == wanted]
    return max(agreeing, key=lambda v: v.annotation_id) if agreeing else None


def settlement_from(votes: Sequence[Vote], labels: Sequence[str], *, agreeing_people: int) -> int:
    """How many people confirm the current ``labels`` once they are settled, or 0 while they are open.

    The labels are settled by an answer that gives exactly these labels and is a re-check (the answer to a
    ``suspect`` queue item), a reviewer decision, or (``agreeing_people`` > 1, i.e. overlap) the answer
    that makes ``agreeing_people`` distinct people agree; any later answer that disagrees re-opens them
    (new evidence), and so does a change of the current label (the settling answer no longer matches it).

    Returns the number of distinct people whose latest answer is ``labels`` (at least 1) when settled.
    """
    current = tuple(labels)
    if not current:
        return 0
    latest: dict[int, tuple[str, ...]] = {}
    settled = False
    for vote in sorted(votes, key=lambda v: v.annotation_id):
        latest[vote.user_id] = vote.labels
        if vote.labels != current:
            settled = False
            continue
        rechecked = vote.recheck or vote.kind == AnnotationKind.REVIEW
        agreed = agreeing_people > 1 and sum(given == current for given in latest.values()) >= agreeing_people
        settled = settled or rechecked or agreed
    return max(1, sum(given == current for given in latest.values())) if settled else 0


def label_names_from(project: Project, value: Any, *, field: str = "label") -> list[str]:
    """Validate one row's ``label``/``labels`` value against the project's classes."""
    return validate_labels(value, task_multi=project.is_multi_label, known=label_map(project), field=field)


def label_map(project: Project) -> dict[str, int]:
    """Label name -> id of the labels a new answer may choose (not retired), read once per project object."""
    cached = getattr(project, "_label_map", None)
    if cached is None:
        rows = db.fetch(f"SELECT name, id, retired FROM {db.table(LabelClass)} WHERE project_id = %s "
                        "ORDER BY position", [project.pk], [None, None, None])
        cached = {name: pk for name, pk, retired in rows if not retired}
        # Every label, retired ones included (an example whose current label was retired keeps it): from the
        # same statement, for refresh_current_labels.
        project._every_label_map = {name: pk for name, pk, _ in rows}  # type: ignore[attr-defined]
        project._label_map = cached  # type: ignore[attr-defined]
    return cached


def validate_labels(value: Any, *, task_multi: bool, known: dict[str, Any], field: str) -> list[str]:
    """Return the label names of one answer or raise InvalidInput with a precise message."""
    names = value if isinstance(value, list) else [value]
    if not names:
        raise InvalidInput([{"field": field, "message": "at least one label is required"}])
    if not task_multi and len(names) > 1:
        raise InvalidInput([{"field": field, "message": "this is a single-label project: give exactly one label"}])
    out = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidInput([{"field": field, "message": "a label must be given by its name (a string)"}])
        if name not in known:
            raise InvalidInput([{"field": field, "message": f"unknown label {name!r}; known: {', '.join(known)}"}])
        if name not in out:
            out.append(name)
    return sorted(out, key=list(known).index) if task_multi else out


def labels_from_payload(project: Project, data: dict[str, Any]) -> list[str]:
    """Read ``label`` (single) or ``labels`` (multi, or a one-element list) from a request body."""
    if "labels" in data and "label" in data:
        raise InvalidInput([{"field": "labels", "message": "give either label or labels, not both"}])
    if "labels" in data:
        if not isinstance(data["labels"], list):
            raise InvalidInput([{"field": "labels", "message": "labels must be a list of label names"}])
        return label_names_from(project, data["labels"], field="labels")
    if "label" in data:
        if isinstance(data["label"], list):
            raise InvalidInput([{"field": "label", "message": "label must be one name; use labels for a list"}])
        return label_names_from(project, data["label"], field="label")
    raise InvalidInput([{"field": "label", "message": "label (or labels) is required"}])


def annotation_create(
    *,
    example: Example,
    user: AbstractBaseUser,
    labels: list[str],
    kind: str | None = None,
    note: str = "",
    queue_item_id: int | None = None,
) -> Annotation:
    """Record one answer and refresh the example's current label, in one transaction.

    ``kind`` defaults to ``label`` for an unlabeled example and ``relabel`` for a labeled one.
    """
    if not isinstance(note, str) or len(note) > 5000:
        raise InvalidInput([{"field": "note", "message": "note must be a string of at most 5,000 characters"}])
    with transaction.atomic():
        if kind is None:
            kind = AnnotationKind.RELABEL if example.label_source else AnnotationKind.LABEL
        annotation = Annotation.objects.create(
            example=example, user=user, kind=kind, labels=labels, note=note, queue_item_id=queue_item_id
        )
        sources = refresh_current_labels([example.id], project=example.project)
    example.label_source = sources.get(example.id, "")
    return annotation


def refresh_current_labels(example_ids: Iterable[int], *, project: Project) -> dict[int, str]:
    """Re-derive the current labels of these examples from their annotations and stored consensus (call
    inside a transaction). Returns each example's new ``label_source``."""
    ids = sorted(set(example_ids))
    if not ids:
        return {}
    # Lock the examples' rows, in id order so two refreshes never deadlock, before reading their votes: two
    # answers submitted at once would otherwise each delete the current labels, miss the other's uncommitted
    # ones and insert their own (a unique violation when they agree, two labels on a single-label example
    # when they differ). FOR NO KEY UPDATE is the lock the UPDATE below takes anyway; unlike FOR UPDATE it
    # does not hold up other transactions' rows that reference these examples (scores, annotations).
    # The lock's query reads the stored consensus too. Written as SQL (annotator/db.py): every answer to a
    # queue item runs these statements.
    examples, links_table = db.table(Example), db.table(ExampleLabel)
    consensus: dict[int, Any] = {}
    for chunk in in_chunks(ids):
        rows = db.fetch(f"SELECT id, consensus FROM {examples} WHERE id IN ({_marks(chunk)}) ORDER BY id "
                        f"{db.lock(no_key=True)}", chunk, _CONSENSUS_FIELDS)
        consensus.update((pk, value) for pk, value in rows if value is not None)
    votes = votes_of(ids)
    label_map(project)
    known = project._every_label_map  # type: ignore[attr-defined]
    agreeing = int(project.setting("overlap"))
    links: list[int] = []
    by_state: dict[tuple[str, int], list[int]] = defaultdict(list)
    sources: dict[int, str] = {}
    for example_id in ids:
        labels, source = current_labels_from(votes.get(example_id, []), consensus.get(example_id))
        sources[example_id] = source
        confirmations = settlement_from(votes.get(example_id, []), labels, agreeing_people=agreeing)
        by_state[(source, confirmations)].append(example_id)
        links.extend(value for name in labels if name in known for value in (example_id, known[name]))
    with connection.cursor() as cursor:
        for chunk in in_chunks(ids):
            cursor.execute(f"DELETE FROM {links_table} WHERE example_id IN ({_marks(chunk)})", chunk)
        for chunk in in_chunks(links):  # (example_id, label_id) pairs, flat; the chunk size is even
            cursor.execute(f"INSERT INTO {links_table} (example_id, label_id) VALUES "
                           + ", ".join(["(%s, %s)"] * (len(chunk) // 2)), chunk)
        for (source, confirmations), members in by_state.items():
            for chunk in in_chunks(members):
                cursor.execute(f"UPDATE {examples} SET label_source = %s, settled = %s, confirmations = %s "
                               f"WHERE id IN ({_marks(chunk)})",
                               [source, confirmations > 0, min(confirmations, 32767), *chunk])
    return sources


def _marks(values: list[Any]) -> str:
    return ", ".join(["%s"] * len(values))


_CONSENSUS_FIELDS = db.fields_of(Example, "id", "consensus")
_VOTE_FIELDS = (*db.fields_of(Annotation, "id", "example", "user", "kind", "labels"),
                QueueItem._meta.get_field("reason"))


def votes_of(example_ids: list[int]) -> dict[int, list[Vote]]:
    """Every annotation of these examples as a :class:`Vote`, by example."""
    votes: dict[int, list[Vote]] = defaultdict(list)
    for chunk in in_chunks(example_ids):
        rows = db.fetch(
            f"SELECT a.id, a.example_id, a.user_id, a.kind, a.labels, q.reason FROM {db.table(Annotation)} a "
            f"LEFT JOIN {db.table(QueueItem)} q ON q.id = a.queue_item_id WHERE a.example_id IN ({_marks(chunk)}) "
            "ORDER BY a.id", chunk, _VOTE_FIELDS)
        for annotation_id, example_id, user_id, kind, labels, reason in rows:
            votes[example_id].append(Vote(annotation_id, user_id, kind, tuple(labels), recheck=reason == "suspect"))
    return votes
