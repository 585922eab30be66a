"""Rows for the team tests: three annotators who all answered the same six items (known agreements, so known
kappas), review decisions that change one label and keep another, a queue answer, and answer times set so the
median time per item is known.

The numbers, worked by hand (P = positive, N = negative):

    item      1  2  3  4  5  6        current label (majority): P P N N P N
    anna      P  P  N  N  P  N        agrees with it 6/6
    ben       P  P  N  N  N  N        5/6
    cara      P  N  N  P  P  N        4/6

- anna-ben: observed 5/6; chance (3/6)(2/6) + (3/6)(4/6) = 1/2; kappa (5/6 - 1/2) / (1/2) = 2/3.
- anna-cara: observed 4/6; chance 1/2; kappa 1/3.
- ben-cara: observed 3/6; chance (2/6)(3/6) + (4/6)(3/6) = 1/2; kappa 0.
- Fleiss: items' agreeing-pair shares 1, 1/3, 1, 1/3, 1/3, 1 -> mean 2/3; P's share 8/18, N's 10/18, chance
  (64 + 100) / 324 = 41/81; kappa (2/3 - 41/81) / (40/81) = 13/40.
- Item 7: anna P, the reviewer decides N (changed). Item 8: ben N, the reviewer decides N (kept).
- Item 9: cara answers it through the queue.
- anna's answers are 0, 10, 30, 60, 1000, 1020, 1050 s after the start: gaps 10, 20, 30, (940 is a break),
  20, 30 -> median 20 s; ben's gaps 15, 25, 40, 15, 45, 10 -> 20 s; cara's 30, 40, 30, 50, 40, 50 -> 40 s.
  The reviewer's two decisions are not timed (reviews and imports are written many at a time).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from annotator.models import Annotation, AnnotationKind, Project, Role
from annotator.services.annotations import annotation_create
from annotator.services.examples import examples_import
from annotator.services.projects import member_set
from annotator.services.queue import queue_add, queue_lease, queue_submit

ANSWERS = {
    "anna": "PPNNPN",
    "ben": "PPNNNN",
    "cara": "PNNPPN",
}
NAME = {"P": "positive", "N": "negative"}
KAPPA = {("anna", "ben"): 2 / 3, ("anna", "cara"): 1 / 3, ("ben", "cara"): 0.0}
FLEISS = 13 / 40
AGREEMENT = {"anna": 1.0, "ben": 5 / 6, "cara": 4 / 6}
OFFSETS = {
    "anna": [0, 10, 30, 60, 1000, 1020, 1050],
    "ben": [0, 15, 40, 80, 95, 140, 150],
    "cara": [0, 30, 70, 100, 150, 190, 240],
}
MEDIAN_SECONDS = {"anna": 20.0, "ben": 20.0, "cara": 40.0}


def build_team(project: Project, admin: Any, reviewer: Any, make_user: Any) -> dict[str, Any]:
    people = {"anna": None, "ben": make_user("ben"), "cara": make_user("cara")}
    from django.contrib.auth import get_user_model

    people["anna"] = get_user_model().objects.get(username="anna")
    for name in ("ben", "cara"):
        member_set(project=project, username=name, role=Role.ANNOTATOR)
    ids = examples_import(project=project, user=admin, rows=[
        {"text": f"team item {i}", "external_id": f"team-{i}"} for i in range(1, 10)
    ]).ids
    examples = {i + 1: example_id for i, example_id in enumerate(ids)}
    from annotator.models import Example

    rows = Example.objects.in_bulk(ids)
    for name in ("anna", "ben", "cara"):
        for i, code in enumerate(ANSWERS[name], start=1):
            annotation_create(example=rows[examples[i]], user=people[name], labels=[NAME[code]])
    annotation_create(example=rows[examples[7]], user=people["anna"], labels=["positive"])
    annotation_create(example=rows[examples[8]], user=people["ben"], labels=["negative"])
    annotation_create(example=rows[examples[7]], user=reviewer, labels=["negative"], kind=AnnotationKind.REVIEW)
    annotation_create(example=rows[examples[8]], user=reviewer, labels=["negative"], kind=AnnotationKind.REVIEW)
    queue_add(project=project, examples=[examples[9]], reason="uncertain", priority=1.0)
    [item] = queue_lease(project=project, user=people["cara"], n=1)
    queue_submit(user=people["cara"], item_id=item.id, data={"label": "neutral"})

    start = timezone.now() - timedelta(hours=2)
    for name, offsets in OFFSETS.items():
        mine = Annotation.objects.filter(user=people[name]).order_by("id").values_list("id", flat=True)
        for annotation_id, offset in zip(mine, offsets, strict=True):
            Annotation.objects.filter(id=annotation_id).update(created_at=start + timedelta(seconds=offset))
    return {"people": people, "examples": examples}
