"""The filtered example list and one example with its annotation history."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from annotator.errors import InvalidInput
from annotator.models import Annotation, Example, ExampleLabel, LabelClass, Project, Role


def _bool_param(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise InvalidInput([{"field": name, "message": f"{name} must be true or false"}])


def example_list(project: Project, *, params: dict[str, str]) -> QuerySet[Example]:
    """Examples of a project filtered by ``source``, ``labeled``, ``label`` and ``q`` (text search)."""
    qs = Example.objects.filter(project=project)
    if params.get("source"):
        qs = qs.filter(source=params["source"])
    if params.get("labeled"):
        if _bool_param(params["labeled"], "labeled"):
            qs = qs.exclude(label_source="")
        else:
            qs = qs.filter(label_source="")
    if params.get("label"):
        label = LabelClass.objects.filter(project=project, name=params["label"]).first()
        if label is None:
            raise InvalidInput([{"field": "label", "message": f"unknown label {params['label']!r}"}])
        qs = qs.filter(Exists(ExampleLabel.objects.filter(example=OuterRef("pk"), label=label)))
    if params.get("q"):
        q = params["q"].strip()
        if len(q) > 200:
            raise InvalidInput([{"field": "q", "message": "q is at most 200 characters"}])
        if q:
            qs = qs.filter(text__icontains=q)
    return qs.order_by("id")


def with_list_relations(qs: QuerySet[Example]) -> QuerySet[Example]:
    return qs.select_related("latest_score__model_version").prefetch_related(
        Prefetch("current_labels", queryset=ExampleLabel.objects.select_related("label").order_by("label__position"))
    )


def example_detail(example: Example, *, user: AbstractBaseUser, role: str) -> tuple[Example, list[Annotation]]:
    """The example and its annotation history (an annotator sees only their own annotations)."""
    history = Annotation.objects.filter(example=example).select_related("user").order_by("id")
    if role == Role.ANNOTATOR:
        history = history.filter(user=user)
    example = with_list_relations(Example.objects.filter(pk=example.pk)).get()
    return example, list(history)
