"""Projects and people: create a project, edit its labels without losing history, manage its members, and
(staff only) create users. Each form calls the same service as the API (services.projects,
services.labels); a refused form answers 422 with the problems next to their fields and writes nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from annotator.errors import InvalidInput
from annotator.models import LabelClass, Membership, Project, Role, Task
from annotator.project_settings import default as project_setting_default
from annotator.selectors import projects as project_selectors
from annotator.services import labels as label_services
from annotator.services import projects as project_services
from annotator.views.access import UNPROCESSABLE, project_context, project_or_404, render_page

NEW_LABEL_ROWS = 4  # empty label rows the create form starts with (the page's script adds more)
MAX_FORM_LABELS = 200


def _field_errors(error: InvalidInput) -> dict[str, str]:
    """Problems by field; a label row's problem by ``label-{index}``."""
    out: dict[str, str] = {}
    for problem in error.errors:
        key = f"label-{problem['index']}" if "index" in problem else problem.get("field", "form")
        if key.startswith("settings."):
            key = key.removeprefix("settings.")
        out.setdefault(key, problem["message"])
    return out


def _label_rows(request: HttpRequest) -> list[dict[str, str]]:
    names = request.POST.getlist("label_name")[:MAX_FORM_LABELS]
    descriptions = request.POST.getlist("label_description")
    examples = request.POST.getlist("label_example")
    rows = []
    for i, name in enumerate(names):
        rows.append({"name": name.strip(),
                     "description": descriptions[i] if i < len(descriptions) else "",
                     "example": examples[i] if i < len(examples) else ""})
    return rows


def _create_context(form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    rows = form["labels"] + [{"name": "", "description": "", "example": ""}] * max(0, NEW_LABEL_ROWS - len(form["labels"]))
    # A row's problem is keyed by its index among the filled rows (the ones sent to the service).
    filled = 0
    shown = []
    for row in rows:
        error = ""
        if row["name"]:
            error = errors.get(f"label-{filled}", "")
            filled += 1
        shown.append({**row, "error": error})
    return {"form": form, "rows": shown, "errors": errors, "tasks": Task.choices,
            "encoders": sorted(django_settings.ENCODERS)}


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: create the project (the creator becomes its admin) and open its labels page."""
    if request.method == "GET":
        form = {"name": "", "task": Task.SINGLE_LABEL, "guidelines": "", "labels": [],
                "encoder": project_setting_default("encoder")}
        return render_page(request, "project_create.html", _create_context(form, {}))
    rows = _label_rows(request)
    form = {"name": request.POST.get("name", ""), "task": request.POST.get("task", ""),
            "guidelines": request.POST.get("guidelines", "").replace("\r\n", "\n"), "labels": rows,
            "encoder": request.POST.get("encoder", project_setting_default("encoder"))}
    filled = [row for row in rows if row["name"] or row["description"] or row["example"]]
    settings = {"guidelines": form["guidelines"]} if form["guidelines"].strip() else {}
    if form["encoder"] != project_setting_default("encoder"):
        settings["encoder"] = form["encoder"]  # checked by the service: a name from the operator's list
    try:
        project = project_services.project_create(user=request.user, name=form["name"], task=form["task"],
                                                  labels=filled, settings=settings or None)
    except InvalidInput as error:
        form["labels"] = filled
        return render_page(request, "project_create.html", _create_context(form, _field_errors(error)),
                           status=UNPROCESSABLE)
    messages.success(request, f"Project {project.name} created; you are its admin. Add members next.")
    return redirect("members", project.id)


# --- labels ---------------------------------------------------------------------------------------------
def _labels_context(request: HttpRequest, project: Project, *, failed: dict[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    """``failed``: the label whose form was refused ({"id", "values", "errors"}), shown as it was sent."""
    rows = project_selectors.project_label_classes(project)
    for row in rows:
        row["errors"] = {}
        if failed and row["id"] == failed["id"]:
            row.update(failed["values"])
            row["errors"] = failed["errors"]
    return {**project_context(request, project, "labels"), "labels": rows,
            "form": {"name": "", "description": "", "example": ""}, "errors": {}, **extra}


def _label_or_404(project: Project, label_id: int) -> LabelClass:
    label = LabelClass.objects.filter(project=project, pk=label_id).first()
    if label is None:
        raise Http404("label not found")
    return label


@login_required
@require_http_methods(["GET", "POST"])
def labels(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the project's labels. POST: add a label (it goes to the end)."""
    project = project_or_404(request, project_id, role=Role.ADMIN)
    if request.method == "GET":
        return render_page(request, "labels.html", _labels_context(request, project))
    form = {key: request.POST.get(key, "") for key in ("name", "description", "example")}
    try:
        label = label_services.label_add(project=project, **form)
    except InvalidInput as error:
        return render_page(request, "labels.html", _labels_context(request, project, form=form,
                                                                   errors=_field_errors(error)),
                           status=UNPROCESSABLE)
    messages.success(request, f"Label {label.name} added.")
    return redirect("labels", project.id)


@login_required
@require_POST
def label_update(request: HttpRequest, project_id: int, label_id: int) -> HttpResponse:
    """Save a label's name, description and example; or retire or restore it (``action``)."""
    project = project_or_404(request, project_id, role=Role.ADMIN)
    label = _label_or_404(project, label_id)
    action = request.POST.get("action", "save")
    old_name = label.name
    try:
        if action == "retire":
            label = label_services.label_update(label=label, retired=True)
            messages.success(request, f"Label {label.name} retired: it stays in the history and exports, "
                                      "but new answers cannot choose it.")
        elif action == "restore":
            label = label_services.label_update(label=label, retired=False)
            messages.success(request, f"Label {label.name} can be chosen again.")
        elif action == "save":
            label = label_services.label_update(label=label, name=request.POST.get("name", ""),
                                                description=request.POST.get("description", ""),
                                                example=request.POST.get("example", ""))
            renamed = f" (renamed from {old_name}; every annotation kept)" if label.name != old_name else ""
            messages.success(request, f"Label {label.name} saved{renamed}.")
        else:
            raise InvalidInput([{"field": "action", "message": "action must be save, retire or restore"}])
    except InvalidInput as error:
        values = ({key: request.POST.get(key, "") for key in ("name", "description", "example")}
                  if action == "save" else {})
        failed = {"id": label.id, "values": values, "errors": _field_errors(error)}
        return render_page(request, "labels.html", _labels_context(request, project, failed=failed),
                           status=UNPROCESSABLE)
    return redirect("labels", project.id)


# --- members --------------------------------------------------------------------------------------------
def _members_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    return {**project_context(request, project, "members"),
            "members": project_selectors.project_members_detail(project),
            "roles": Role.choices, "form": {"username": "", "role": Role.ANNOTATOR}, "errors": {},
            "can_create_users": request.user.is_staff, **extra}


def _member_or_404(project: Project, user_id: int) -> Membership:
    membership = Membership.objects.select_related("user").filter(project=project, user_id=user_id).first()
    if membership is None:
        raise Http404("member not found")
    return membership


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the members and their roles. POST: add an existing user by username (or set their role)."""
    project = project_or_404(request, project_id, role=Role.ADMIN)
    if request.method == "GET":
        return render_page(request, "members.html", _members_context(request, project))
    form = {"username": request.POST.get("username", "").strip(), "role": request.POST.get("role", "")}
    try:
        membership = project_services.member_set(project=project, username=form["username"], role=form["role"])
    except InvalidInput as error:
        return render_page(request, "members.html", _members_context(request, project, form=form,
                                                                     errors=_field_errors(error)),
                           status=UNPROCESSABLE)
    messages.success(request, f"{membership.user.get_username()} is now {membership.role} of {project.name}.")
    return redirect("members", project.id)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    membership = _member_or_404(project, user_id)
    username = membership.user.get_username()
    try:
        project_services.member_set(project=project, username=username, role=request.POST.get("role", ""))
    except InvalidInput as error:
        return render_page(request, "members.html",
                           _members_context(request, project, errors={f"member-{user_id}": error.errors[0]["message"]}),
                           status=UNPROCESSABLE)
    messages.success(request, f"{username} is now {request.POST.get('role')}.")
    return redirect("members", project.id)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    project = project_or_404(request, project_id, role=Role.ADMIN)
    membership = _member_or_404(project, user_id)
    username = membership.user.get_username()
    try:
        project_services.member_remove(project=project, username=username)
    except InvalidInput as error:
        return render_page(request, "members.html",
                           _members_context(request, project, errors={f"member-{user_id}": error.errors[0]["message"]}),
                           status=UNPROCESSABLE)
    messages.success(request, f"{username} removed from {project.name}; their answers stay in the history.")
    if membership.user_id == request.user.pk:
        return redirect("project-list")
    return redirect("members", project.id)


# --- users (staff) --------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    """Staff only (others get 404, as for any page they cannot use): create a user who can then be added to
    projects by username."""
    if not request.user.is_staff:
        raise Http404("page not found")
    form = {"username": "", "email": ""}
    if request.method == "GET":
        return render_page(request, "user_create.html", {"form": form, "errors": {}})
    form = {"username": request.POST.get("username", "").strip(), "email": request.POST.get("email", "").strip()}
    errors: dict[str, str] = {}
    if form["email"] and "@" not in form["email"]:
        errors["email"] = "enter a valid email address"
    if request.POST.get("password", "") != request.POST.get("password2", ""):
        errors["password2"] = "the two passwords differ"
    try:
        if errors:
            raise InvalidInput([{"field": key, "message": message} for key, message in errors.items()])
        user = project_services.user_create(username=form["username"], password=request.POST.get("password", ""),
                                            email=form["email"])
    except InvalidInput as error:
        return render_page(request, "user_create.html", {"form": form, "errors": _field_errors(error)},
                           status=UNPROCESSABLE)
    messages.success(request, f"User {user.get_username()} created. Add them to a project on its Members page.")
    return redirect("user-create")

