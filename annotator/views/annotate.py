"""The annotate page: one leased item at a time, the next one already leased and in the page.

Every answer goes through ``services.queue`` (submit, skip) like the API's queue endpoints; undo shows the
caller's last answered item again, and the new answer is a newer, append-only annotation that replaces the
old one in the current label (``services.annotations.annotation_create``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotator.errors import Conflict, InvalidInput
from annotator.models import Annotation, Project, QueueItem
from annotator.selectors import projects as project_selectors
from annotator.selectors import queue as queue_selectors
from annotator.services import annotations as annotation_services
from annotator.services import models as model_services
from annotator.services import queue as queue_services
from annotator.views.access import project_context, project_or_404, render_page, wants_partial

PREFETCH = 2  # the item on screen and the next one
REASON_HELP = {
    "uncertain": "The model is unsure about this text; your label teaches it the most.",
    "suspect": "This example already has a label that the model thinks may be wrong.",
    "drift": "Recent production traffic looks different from the training data.",
    "random": "A random pick, so the queue also measures the model without bias.",
}


def _session_key(project: Project) -> str:
    return f"annotated-{project.id}"


def _labels_from_form(request: HttpRequest, project: Project) -> dict[str, Any]:
    chosen = request.POST.getlist("label")
    if project.is_multi_label:
        return {"labels": chosen}
    if len(chosen) != 1:
        raise InvalidInput([{"field": "label", "message": "pick one label (keys 1-9) before submitting"}])
    return {"label": chosen[0]}


def _item_view(item: dict[str, Any]) -> dict[str, Any]:
    item["reason_help"] = item.get("explanation") or REASON_HELP.get(item["reason"], "")
    item["reason_name"] = QueueItem.Reason(item["reason"]).label
    suggestion = item.get("suggestion")
    if suggestion:
        suggestion["names"] = suggestion.get("labels") or ([suggestion["label"]] if suggestion.get("label") else [])
    return item


def _correction_item(project: Project, answer: Annotation) -> dict[str, Any]:
    """The item of an earlier answer, shaped like a leased item, to be answered again."""
    out = queue_selectors.queue_items_shown(project, [answer.queue_item])[0]
    out["correction"] = {"annotation_id": answer.id, "previous": answer.labels}
    return _item_view(out)


def _stage_context(request: HttpRequest, project: Project, *, notice: str = "", error: str = "",
                   retry_item: int | None = None, reopen: Annotation | None = None,
                   skipped: int | None = None) -> dict[str, Any]:
    items = queue_services.queue_lease(project=project, user=request.user, n=PREFETCH)
    if skipped is not None and any(item.id == skipped for item in items):
        # Nothing else was pending: the item just skipped came straight back. Give it back again, so it
        # stays free for others instead of sitting leased behind the page.
        queue_services.queue_skip(user=request.user, item_id=skipped)
        items = [item for item in items if item.id != skipped]
    shown = [_item_view(item) for item in queue_selectors.queue_items_shown(project, items)]
    if reopen is not None:
        shown.insert(0, _correction_item(project, reopen))
    stats = queue_selectors.queue_stats(project)
    return {
        "items": shown,
        # Retired labels are left out: new answers cannot choose them, and the keys stay 1, 2, 3...
        "labels": project_selectors.label_choices(project),
        "multi": project.is_multi_label,
        "session_count": request.session.get(_session_key(project), 0),
        "waiting": stats["pending"],
        "notice": notice,
        "error": error,
        "retry_item": retry_item,
        "show_suggestions": bool(project.setting("show_suggestions")),
    }


def _stage(request: HttpRequest, project: Project, **kwargs: Any) -> HttpResponse:
    """After a POST: the stage partial for the page's script, or back to the page without it."""
    if wants_partial(request):
        context = {**project_context(request, project, "annotate"), **_stage_context(request, project, **kwargs)}
        return render_page(request, "annotate.html", context, partial="stage")
    if kwargs.get("error"):
        messages.error(request, kwargs["error"])
    elif kwargs.get("notice"):
        messages.success(request, kwargs["notice"])
    return redirect("annotate", project.id)


@login_required
@require_GET
def annotate(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    reopen = None
    if request.GET.get("reopen"):
        reopen = queue_selectors.last_queue_answer(request.user, project)
    notice = "" if reopen or not request.GET.get("reopen") else "You have no earlier answer in this project to undo."
    context = {
        **project_context(request, project, "annotate"),
        **_stage_context(request, project, reopen=reopen, notice=notice),
        "guidelines": project.setting("guidelines"),
    }
    return render_page(request, "annotate.html", context, partial="stage")


def _item_of_project_or_404(project: Project, item_id: int) -> None:
    """An item of another project (or none) is a 404 here, never a write in the other project."""
    if not queue_selectors.queue_item_in_project(project, item_id):
        raise Http404("queue item not found")


@login_required
@require_POST
def submit(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    _item_of_project_or_404(project, item_id)
    try:
        data = _labels_from_form(request, project)
        annotation = queue_services.queue_submit(user=request.user, item_id=item_id, data=data)
    except Conflict as error:
        return _stage(request, project, error=f"Not saved: {error.errors[0]['message']}.")
    except InvalidInput as error:
        return _stage(request, project, error=error.errors[0]["message"], retry_item=item_id)
    model_services.maybe_retrain(project=project)
    key = _session_key(project)
    request.session[key] = request.session.get(key, 0) + 1
    return _stage(request, project, notice=f"Saved: {', '.join(annotation.labels)}.")


@login_required
@require_POST
def skip(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    _item_of_project_or_404(project, item_id)
    # Take the replacement first, so the item just given back is not handed straight back.
    queue_services.queue_lease(project=project, user=request.user, n=PREFETCH + 1)
    try:
        queue_services.queue_skip(user=request.user, item_id=item_id)
    except Conflict as error:
        return _stage(request, project, error=f"Not skipped: {error.errors[0]['message']}.")
    return _stage(request, project, notice="Skipped; the item went back to the queue.", skipped=item_id)


@login_required
@require_POST
def correct(request: HttpRequest, project_id: int, annotation_id: int) -> HttpResponse:
    """Answer an earlier item again (undo): a new annotation, which outranks the user's old one."""
    project = project_or_404(request, project_id)
    answer = queue_selectors.answer_of(request.user, project, annotation_id)
    if answer is None:
        raise Http404("answer not found")
    try:
        data = _labels_from_form(request, project)
        labels = annotation_services.labels_from_payload(project, data)
    except InvalidInput as error:
        if wants_partial(request):
            return _stage(request, project, error=error.errors[0]["message"], reopen=answer)
        return redirect(reverse("annotate", args=[project.id]) + "?reopen=last")
    example = answer.example
    example.project = project
    annotation_services.annotation_create(
        example=example, user=request.user, labels=labels, kind=answer.kind,
        note=f"changed with undo; replaces annotation {answer.id}", queue_item_id=answer.queue_item_id,
    )
    model_services.maybe_retrain(project=project)
    return _stage(request, project, notice=f"Changed your answer to {', '.join(labels)}.")
