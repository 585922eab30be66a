"""The review queue: leasing, submitting, skipping. Locks live here and only here.

Leasing takes pending items with ``SELECT ... FOR UPDATE SKIP LOCKED`` (as Label Studio's next_task does),
so concurrent annotators never receive the same item; an item whose lease expired is taken like a pending
one (row by row, SKIP LOCKED), so no lease waits on another to release expired leases. A lease of n items
draws reasons in proportion to the project's effective queue mix (smooth weighted round robin,
:func:`interleave`); priority orders items only within a reason, and when a reason runs out the others fill
in. Overlap: an example may have several queue items (slots), and one annotator never gets two slots of one
example (one user's leases in a project take turns, on their membership row).
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotator import db
from annotator.db import in_chunks, is_postgres
from annotator.errors import Conflict, InvalidInput, NotFound
from annotator.models import Annotation, AnnotationKind, Example, ExampleLabel, Membership, Project, QueueItem
from annotator.services.annotations import annotation_create, labels_from_payload
from annotator.services.webhooks import queue_low_check

MAX_LEASE_BATCH = 100
# A skipped item is not offered to the same annotator again for this long.
SKIP_COOLDOWN = timedelta(minutes=30)
# Why an item is in the queue; services.queue_policy decides which items and the mix of reasons.
REASONS = ("uncertain", "suspect", "drift", "random")


def interleave(shares: dict[str, float], available: dict[str, int], n: int) -> list[str]:
    """The reasons of ``n`` slots, by smooth weighted round robin over ``shares``.

    Each slot goes to the reason furthest behind its share, so every prefix of the sequence is close to the
    mix (a lease of 50 with 0.6/0.25/0.1/0.05 gives 30/12/5/3). A reason with nothing left drops out and
    the others fill in; reasons with a zero share are used only when every other one is empty.
    """
    left = {reason: count for reason, count in available.items() if count > 0}
    credit = dict.fromkeys(left, 0.0)
    sequence: list[str] = []
    while len(sequence) < n and left:
        weighted = {reason: shares.get(reason, 0.0) for reason in left if shares.get(reason, 0.0) > 0}
        if not weighted:  # only zero-share reasons remain: equal turns
            weighted = dict.fromkeys(left, 1.0)
        total = sum(weighted.values())
        for reason, weight in weighted.items():
            credit[reason] += weight
        best = max(weighted, key=lambda reason: (credit[reason], weighted[reason]))
        credit[best] -= total
        sequence.append(best)
        left[best] -= 1
        if left[best] == 0:
            del left[best]
    return sequence


def lease_mix(project: Project) -> dict[str, float]:
    """The shares leases draw by: the last rebuild's effective mix (services.queue_policy), else the
    configured one."""
    mix = (project.queue_state or {}).get("mix") or project.setting("queue_mix")
    return {reason: float(mix.get(reason, 0.0)) for reason in REASONS}


def _check_n(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LEASE_BATCH:
        raise InvalidInput([{"field": "n", "message": f"n must be an integer from 1 to {MAX_LEASE_BATCH}"}])
    return n


def queue_lease(*, project: Project, user: AbstractBaseUser, n: int = 10) -> list[QueueItem]:
    """Lease up to ``n`` items to ``user`` (items they already hold first, renewed), the fresh ones drawn
    across reasons in proportion to the queue mix."""
    _check_n(n)
    with transaction.atomic():
        # One user's leases in one project run one at a time (a lock on their membership row): the second
        # then sees the items the first took. Without it, with overlap, the second would skip the slot the
        # first has locked and take the next slot of the same example.
        m = db.table(Membership)
        db.fetch(f"SELECT m.id FROM {m} m WHERE m.project_id = %s AND m.user_id = %s {db.lock(no_key=True)}",
                 [project.pk, user.pk], [None])
        items = _lease_locked(project, user, n)
    queue_low_check(project=project)
    return items


def queue_next(*, user: AbstractBaseUser, project_id: Any, n: int | None) -> tuple[Project, list[QueueItem]]:
    """The API's lease: the membership check (404 for non-members, any role may lease), the project and the
    lock on the caller's membership row in one statement, then :func:`queue_lease`'s draw. ``n`` None: the
    client sent no integer (a 400, after the 404 a non-member gets)."""
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise NotFound("project not found") from None
    with transaction.atomic():
        rows = db.fetch(_member_sql(connection.vendor), [pk, user.pk], (_ROLE, *_PROJECT_FIELDS))
        if not rows:
            raise NotFound("project not found")
        project = db.instance(Project, _PROJECT_FIELDS, rows[0][1:])
        project._role_cache = {user.pk: rows[0][0]}  # type: ignore[attr-defined] - selectors.access.role_of
        items = _lease_locked(project, user, _check_n(n))
    queue_low_check(project=project)
    return project, items


_ROLE = Membership._meta.get_field("role")
_PROJECT_FIELDS = db.fields_of(Project)
_ITEM_FIELDS = db.fields_of(QueueItem)


@functools.cache
def _member_sql(vendor: str) -> str:
    return (f"SELECT m.role, {db.columns('p', _PROJECT_FIELDS)} FROM {db.table(Membership)} m "
            f"JOIN {db.table(Project)} p ON p.id = m.project_id WHERE m.project_id = %s AND m.user_id = %s "
            f"{db.lock(of='m', no_key=True)}")


@functools.cache
def _lease_sql(vendor: str, overlap: bool) -> str:
    """One statement for every row a lease may take, each part locked row by row (SKIP LOCKED) and marked
    by its last column: the caller's live leases ('held', up to n), expired leases ('expired') and each
    reason's best pending items (straight from the (project, status, reason, -priority, id) index), up to 3n
    each: the 2 * (n - held) a draw looks at once the held examples are left out. With overlap, examples the
    caller holds a live lease on or answered are left out here."""
    q, cols, skip = db.table(QueueItem), db.columns("q", _ITEM_FIELDS), db.lock(skip_locked=True)
    order = "ORDER BY q.priority DESC, q.id"
    available = ("q.project_id = %(project)s AND (q.skipped_by_id IS NULL OR q.skipped_by_id <> %(user)s "
                 "OR q.skipped_at IS NULL OR q.skipped_at < %(cooldown)s)")
    if overlap:
        # With overlap, one annotator still answers each example once.
        available += (f" AND q.example_id NOT IN (SELECT l.example_id FROM {q} l WHERE l.project_id = %(project)s "
                      "AND l.status = %(leased)s AND l.leased_by_id = %(user)s AND l.lease_expires_at >= %(now)s) "
                      f"AND NOT EXISTS (SELECT 1 FROM {db.table(Annotation)} a WHERE a.example_id = q.example_id "
                      "AND a.user_id = %(user)s)")
    parts = [
        f"SELECT {cols}, 'held' FROM {q} q WHERE q.project_id = %(project)s AND q.status = %(leased)s AND "
        f"q.leased_by_id = %(user)s AND q.lease_expires_at >= %(now)s {order} LIMIT %(n)s {skip}",
        f"SELECT {cols}, 'expired' FROM {q} q WHERE {available} AND q.status = %(leased)s AND "
        f"q.lease_expires_at < %(now)s {order} LIMIT %(k)s {skip}",
        *(f"SELECT {cols}, '{reason}' FROM {q} q WHERE {available} AND q.status = %(pending)s AND "
          f"q.reason = '{reason}' {order} LIMIT %(k)s {skip}" for reason in REASONS),
    ]
    return " UNION ALL ".join(f"SELECT * FROM ({part}) AS part{i}" for i, part in enumerate(parts))


def _lease_locked(project: Project, user: AbstractBaseUser, n: int) -> list[QueueItem]:
    """The lease itself, inside the transaction that locked the caller's membership row."""
    now = timezone.now()
    expires = now + timedelta(seconds=int(project.setting("lease_seconds")))
    adapt = connection.ops.adapt_datetimefield_value
    rows = db.fetch(_lease_sql(connection.vendor, int(project.setting("overlap")) > 1), {
        "project": project.pk, "user": user.pk, "now": adapt(now), "cooldown": adapt(now - SKIP_COOLDOWN),
        "leased": QueueItem.Status.LEASED, "pending": QueueItem.Status.PENDING, "n": n, "k": 3 * n,
    }, (*_ITEM_FIELDS, None))
    parts: dict[str, list[QueueItem]] = {}
    for row in rows:
        parts.setdefault(row[-1], []).append(db.instance(QueueItem, _ITEM_FIELDS, row[:-1]))
    held = parts.get("held", [])
    fresh: list[QueueItem] = []
    if len(held) < n:
        want = n - len(held)
        seen_examples = {item.example_id for item in held}

        def best(part: str) -> list[QueueItem]:
            return [item for item in parts.get(part, []) if item.example_id not in seen_examples][: want * 2]

        # An expired lease is up for grabs like a pending item, and only the ones this lease takes change
        # hands: releasing all of them first would wait on every row another lease or a submit holds.
        expired = best("expired")
        by_reason: dict[str, list[QueueItem]] = {}
        for reason in REASONS:
            candidates = [*best(reason), *(item for item in expired if item.reason == reason)]
            candidates.sort(key=lambda item: (-item.priority, item.id))
            by_reason[reason] = candidates[: want * 2]
        taken_examples: set[int] = set(seen_examples)
        cursor = dict.fromkeys(REASONS, 0)
        for reason in interleave(lease_mix(project), {r: len(v) for r, v in by_reason.items()}, want * 2):
            # Skip a second slot of an example already taken (it may sit under two reasons).
            item = by_reason[reason][cursor[reason]]
            cursor[reason] += 1
            if item.example_id in taken_examples:
                continue
            taken_examples.add(item.example_id)
            fresh.append(item)
            if len(fresh) == want:
                break
    items = held + fresh
    if items:
        for item in items:
            item.status = QueueItem.Status.LEASED
            item.leased_by_id = user.pk
            item.lease_expires_at = expires
        with connection.cursor() as cursor_:
            cursor_.execute(
                f"UPDATE {db.table(QueueItem)} SET status = %s, leased_by_id = %s, lease_expires_at = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(items))})",
                [QueueItem.Status.LEASED, user.pk, adapt(expires), *(item.id for item in items)])
    return items


def _locked_item_of(user: AbstractBaseUser, item_id: Any) -> QueueItem:
    """The queue item, locked, with its project and the example's id and current label source, if the user
    is a member of its project (404 otherwise, as for a missing item): one statement."""
    try:
        pk = int(item_id)
    except (TypeError, ValueError):
        raise NotFound("queue item not found") from None
    rows = db.fetch(_item_sql(connection.vendor), [pk, user.pk], (*_ITEM_FIELDS, *_EXAMPLE_FIELDS, *_PROJECT_FIELDS))
    if not rows:
        raise NotFound("queue item not found")
    row = rows[0]
    end_item, end_example = len(_ITEM_FIELDS), len(_ITEM_FIELDS) + len(_EXAMPLE_FIELDS)
    item = db.instance(QueueItem, _ITEM_FIELDS, row[:end_item])
    item.example = db.instance(Example, _EXAMPLE_FIELDS, row[end_item:end_example])
    item.project = item.example.project = db.instance(Project, _PROJECT_FIELDS, row[end_example:])
    return item


_EXAMPLE_FIELDS = db.fields_of(Example, "id", "project", "label_source")


@functools.cache
def _item_sql(vendor: str) -> str:
    return (f"SELECT {db.columns('q', _ITEM_FIELDS)}, {db.columns('e', _EXAMPLE_FIELDS)}, "
            f"{db.columns('p', _PROJECT_FIELDS)} FROM {db.table(QueueItem)} q "
            f"JOIN {db.table(Example)} e ON e.id = q.example_id JOIN {db.table(Project)} p ON p.id = q.project_id "
            f"WHERE q.id = %s AND EXISTS (SELECT 1 FROM {db.table(Membership)} m WHERE m.project_id = q.project_id "
            f"AND m.user_id = %s) {db.lock(of='q')}")


def _require_lease(item: QueueItem, user: AbstractBaseUser) -> None:
    if item.status != QueueItem.Status.LEASED or item.leased_by_id != user.pk:
        raise Conflict("this item is not leased to you (the lease expired or was never taken); lease it again")
    if item.lease_expires_at and item.lease_expires_at < timezone.now():
        # Expired but nobody took it over: the lease is lost all the same.
        raise Conflict("your lease on this item expired; lease it again")


def queue_submit(*, user: AbstractBaseUser, item_id: Any, data: dict[str, Any]) -> Annotation:
    """Answer a leased item: the annotation and the item's closing happen in one transaction."""
    with transaction.atomic():
        item = _locked_item_of(user, item_id)
        _require_lease(item, user)
        labels = labels_from_payload(item.project, data)
        note = data.get("note") or ""
        suspect = item.reason == QueueItem.Reason.SUSPECT
        outcome = item.outcome
        if suspect:
            # The detector doubted the current label: this answer says whether it was an error.
            doubted = set(ExampleLabel.objects.filter(example_id=item.example_id).values_list("label__name", flat=True))
            outcome = "confirmed" if doubted == set(labels) else "changed"
        annotation = annotation_create(
            example=item.example, user=user, labels=labels, kind=AnnotationKind.RELABEL if suspect else None,
            note=note, queue_item_id=item.id,
        )
        db.update(item, status=QueueItem.Status.DONE, done_by=user, done_at=timezone.now(), lease_expires_at=None,
                  outcome=outcome)
    return annotation


def queue_skip(*, user: AbstractBaseUser, item_id: Any) -> QueueItem:
    """Give a leased item back to the queue."""
    with transaction.atomic():
        item = _locked_item_of(user, item_id)
        _require_lease(item, user)
        item.status = QueueItem.Status.PENDING
        item.leased_by = None
        item.lease_expires_at = None
        item.skipped_by = user
        item.skipped_at = timezone.now()
        item.save(update_fields=["status", "leased_by", "lease_expires_at", "skipped_by", "skipped_at"])
    return item


def queue_heartbeat(*, user: AbstractBaseUser, item_id: Any) -> QueueItem:
    """Renew a lease the caller still holds."""
    with transaction.atomic():
        item = _locked_item_of(user, item_id)
        _require_lease(item, user)
        item.lease_expires_at = timezone.now() + timedelta(seconds=int(item.project.setting("lease_seconds")))
        item.save(update_fields=["lease_expires_at"])
    return item


def queue_add(
    *, project: Project, examples: list[Example] | list[int], reason: str, priority: float = 0.0,
    explanation: str = "", model_version_id: int | None = None,
) -> int:
    """Put examples in the queue with one priority and explanation (see :func:`queue_add_many`)."""
    ids = [e if isinstance(e, int) else e.id for e in examples]
    return queue_add_many(project=project, reason=reason, items=[(example_id, priority, explanation) for example_id in ids],
                          model_version_id=model_version_id)


def queue_add_many(
    *, project: Project, reason: str, items: list[tuple[int, float, str]], model_version_id: int | None = None,
    slots: int | None = None,
) -> int:
    """Queue ``(example_id, priority, explanation)`` items of one reason in bulk (one item per overlap slot,
    or ``slots``); examples with an open item in a slot are left alone, and so is a repeated example (its
    first item counts). Returns the number of items created.

    PostgreSQL: one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` however many items (the
    one-open-item-per-slot constraint skips the slots already open, also those a concurrent writer fills);
    ids follow the order of ``items``, so equal priorities lease in that order."""
    if not items:
        return 0
    overlap = slots or int(project.setting("overlap"))
    first: dict[int, tuple[float, str]] = {}
    for example_id, priority, explanation in items:
        first.setdefault(example_id, (priority, explanation))
    template = QueueItem(project=project, reason=reason, model_version_id=model_version_id,
                         status=QueueItem.Status.PENDING)
    if is_postgres():
        rows = [(example_id, float(priority), slot, explanation[:300])
                for example_id, (priority, explanation) in first.items() for slot in range(overlap)]
        return _insert_skipping_open_slots(template, rows)
    with transaction.atomic():
        open_slots: set[tuple[int, int]] = set()
        for chunk in in_chunks(first):
            open_slots.update(QueueItem.objects.filter(
                example_id__in=chunk, status__in=[QueueItem.Status.PENDING, QueueItem.Status.LEASED]
            ).values_list("example_id", "slot"))
        objects = [
            QueueItem(project=project, example_id=example_id, reason=reason, priority=priority, slot=slot,
                      explanation=explanation[:300], model_version_id=model_version_id)
            for example_id, (priority, explanation) in first.items() for slot in range(overlap)
            if (example_id, slot) not in open_slots
        ]
        # SQLite runs one writing transaction at a time (BEGIN IMMEDIATE): nothing filled a slot since the
        # check above, so every row is inserted.
        QueueItem.objects.bulk_create(objects, batch_size=2000, ignore_conflicts=True)
        return len(objects)


# The columns that vary by row in a bulk queue insert; every other column takes the template's value.
_PER_ROW = {"example_id": "bigint[]", "priority": "double precision[]", "slot": "smallint[]",
            "explanation": "text[]"}


def _insert_skipping_open_slots(template: QueueItem, rows: list[tuple[int, float, int, str]]) -> int:
    """Insert ``(example_id, priority, slot, explanation)`` rows with ``template``'s other columns in one
    statement, skipping a row whose (example, slot) already has an open item; returns how many went in."""
    select: list[str] = []
    constants: list[Any] = []
    for field in QueueItem._meta.concrete_fields:
        if field.primary_key:
            continue
        cast = field.cast_db_type(connection)
        if field.attname in _PER_ROW:
            select.append(f"t.{field.attname}::{cast}")
        else:
            select.append(f"%s::{cast}")
            constants.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    columns = ", ".join(connection.ops.quote_name(field.column) for field in QueueItem._meta.concrete_fields
                        if not field.primary_key)
    arrays = ", ".join(f"%s::{kind}" for kind in _PER_ROW.values())
    sql = (f"INSERT INTO {connection.ops.quote_name(QueueItem._meta.db_table)} ({columns}) "
           f"SELECT {', '.join(select)} FROM unnest({arrays}) WITH ORDINALITY "
           f"AS t({', '.join(_PER_ROW)}, position) ORDER BY t.position ON CONFLICT DO NOTHING")
    values = [list(column) for column in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*constants, *values])
        return cursor.rowcount
