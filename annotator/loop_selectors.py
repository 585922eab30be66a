"""Read queries of the loop: queue state, jobs, model versions, the noise report, drift windows."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
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
from django.utils import timezone

from annotator.errors import NotFound
from annotator.models import (
    DriftWindow,
    Example,
    ExampleLabel,
    ExampleScore,
    Job,
    ModelVersion,
    Project,
    QueueItem,
    Role,
)
from annotator.selectors import project_labels, require_role, role_of
from annotator.services.bulk import in_chunks


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# --- queue ----------------------------------------------------------------------------------------------
def queue_stats(project: Project) -> dict[str, Any]:
    now = timezone.now()
    rows = (
        QueueItem.objects.filter(project=project)
        .values_list("status", "reason")
        .annotate(n=Count("id"))
    )
    by_status = dict.fromkeys(["pending", "leased", "done"], 0)
    by_reason: dict[str, int] = {}
    for status, reason, n in rows:
        if status in by_status:
            by_status[status] += n
        if status in (QueueItem.Status.PENDING, QueueItem.Status.LEASED):
            by_reason[reason] = by_reason.get(reason, 0) + n
    expired = QueueItem.objects.filter(
        project=project, status=QueueItem.Status.LEASED, lease_expires_at__lt=now
    ).count()
    by_status["pending"] += expired
    by_status["leased"] -= expired
    rebuilt = (
        Job.objects.filter(project=project, kind=Job.Kind.QUEUE_REBUILD, status=Job.Status.SUCCEEDED)
        .order_by("-finished_at").values_list("finished_at", flat=True).first()
    )
    serving = project.serving_version
    state = project.queue_state or {}
    return {**by_status, "by_reason": by_reason, "model_version": serving.number if serving else None,
            "rebuilt_at": _time(rebuilt), "mix": state.get("mix") or project.setting("queue_mix"),
            "strategy": state.get("strategy", project.setting("query_strategy")),
            "cold_start": state.get("cold_start", False),
            "held_back_for_holdout": state.get("held_back_for_holdout", 0)}


def queue_items_out(project: Project, items: list[QueueItem]) -> list[dict[str, Any]]:
    """The leased items as the API and the annotate page show them."""
    from annotator.services.queue_policy import explanation_shown

    if not items:
        return []
    show = bool(project.setting("show_suggestions"))
    examples = {e.id: e for e in Example.objects.filter(id__in=[i.example_id for i in items]).select_related(
        "latest_score")}
    out = []
    for item in items:
        example = examples[item.example_id]
        score = example.latest_score
        suggestion = None
        if show and score is not None:
            predicted = score.predicted or []
            suggestion = {"label": predicted[0] if predicted else None, "labels": predicted,
                          "confidence": round(score.confidence, 4)}
        out.append({
            "id": item.id,
            "example": {"id": example.id, "external_id": example.external_id, "text": example.text,
                        "source": example.source, "metadata": example.metadata},
            "reason": item.reason,
            "explanation": explanation_shown(item.explanation, show_suggestions=show),
            "priority": round(item.priority, 6),
            "suggestion": suggestion,
            "lease_expires_at": _time(item.lease_expires_at),
        })
    return out


# --- jobs -----------------------------------------------------------------------------------------------
def _project_object_for(model: type, user: AbstractBaseUser, pk: Any, *, role: str, what: str) -> Any:
    """A row of a project the user belongs to: 404 for non-members (as for a missing row), 403 for a low role."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise NotFound(f"{what} not found") from None
    obj = model.objects.select_related("project").filter(pk=pk).first()
    if obj is None or role_of(user, obj.project) is None:
        raise NotFound(f"{what} not found")
    require_role(user, obj.project, role)
    return obj


def job_for(user: AbstractBaseUser, job_id: Any, *, role: str = Role.ANNOTATOR) -> Job:
    return _project_object_for(Job, user, job_id, role=role, what="job")


# --- models ---------------------------------------------------------------------------------------------
def model_version_for(user: AbstractBaseUser, model_id: Any, *, role: str = Role.REVIEWER) -> ModelVersion:
    return _project_object_for(ModelVersion, user, model_id, role=role, what="model version")


def model_version_out(version: ModelVersion, project: Project, *,
                      running_jobs: set[int] | None = None) -> dict[str, Any]:
    """One version as the models API gives it; ``running_jobs`` (ids of the project's unfinished jobs) saves a
    query per undecided version when many are listed."""
    metrics = version.metrics or {}
    return {
        "id": version.id,
        "number": version.number,
        "version": version.number,
        "status": version.status,
        "mode": version.mode,
        "n_train": version.n_train,
        "promoted": project.serving_version_id == version.id,
        # Measured on the stable holdout (None when it is too small: ``holdout`` says why).
        "macro_f1": metrics.get("macro_f1"),
        "macro_f1_ci": metrics.get("macro_f1_ci"),
        "ece": metrics.get("ece"),
        "holdout": holdout_out(version),
        "promotion": promotion_out(version, running_jobs=running_jobs),
        "metrics": metrics,
        "comparison": version.comparison,
        # Agreement with the previous version's predictions on the stop set, and the stopping decision.
        "stability": version.stability,
        "content_hash": version.content_hash,
        "snapshot": version.snapshot,
        "created_at": _time(version.created_at),
        "finished_at": _time(version.finished_at),
        "promoted_at": _time(version.promoted_at),
    }


LEGACY_HOLDOUT = "trained before the stable holdout: measured on its validation split only, so not comparable"


def holdout_out(version: ModelVersion) -> dict[str, Any]:
    """The version's held-out measurement (services.holdout, services.pipeline.measure_holdout), or why there
    is none."""
    holdout = (version.metrics or {}).get("holdout")
    if holdout is not None:
        return holdout
    if version.status != ModelVersion.Status.READY:
        return {"n": None, "reason": f"not measured: the version is {version.status}"}
    return {"n": None, "reason": LEGACY_HOLDOUT}


def running_job_ids(project: Project) -> set[int]:
    return set(Job.objects.filter(project=project).exclude(status__in=Job.FINISHED).values_list("id", flat=True))


def promotion_out(version: ModelVersion, *, running_jobs: set[int] | None = None) -> dict[str, Any]:
    """The promotion decision with its evidence (services.pipeline.decide_promotion) and every promotion of
    the version since (by hand, rollbacks); ``decision`` is None while or when none was made."""
    comparison = version.comparison or {}
    history = list(comparison.get("history") or [])
    if not history and isinstance(comparison.get("promotion"), str):  # versions from before the history
        history = [{"reason": comparison["promotion"]}]
    if comparison.get("decision"):
        return {"decision": comparison["decision"], "evidence": comparison.get("evidence") or {},
                "policy": comparison.get("policy"), "decided_at": comparison.get("decided_at"), "history": history}
    if "candidate_macro_f1" in comparison:  # the shadow comparison of versions from before the holdout
        evidence = {k: v for k, v in comparison.items() if k not in ("history", "promotion")}
        return {"decision": "promoted" if comparison.get("promoted") else "rejected", "evidence": evidence,
                "policy": "auto", "decided_at": None, "history": history}
    if comparison.get("promotion") == "first version":
        return {"decision": "first version", "evidence": {"reason": "no version served yet"}, "policy": "auto",
                "decided_at": None, "history": history}
    if version.status == ModelVersion.Status.TRAINING:
        reason = "not decided yet: the version is still training"
    elif version.status == ModelVersion.Status.FAILED:
        reason = "not decided: the version failed"
    elif version.job_id and version.job_id in (running_jobs if running_jobs is not None
                                               else running_job_ids(version.project)):
        reason = "not decided yet: promotion waits until scoring succeeded"
    else:
        reason = "not decided: scoring did not finish (failed or cancelled); it can be promoted by hand"
    return {"decision": None, "evidence": {"reason": reason}, "policy": None, "decided_at": None,
            "history": history}


# --- noise report ---------------------------------------------------------------------------------------
def latest_noise_version(project: Project) -> ModelVersion | None:
    """The newest ready version whose scores include label quality."""
    return (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY, metrics__has_key="noise")
        .order_by("-number").first()
    )


def noise_report(project: Project, *, label: str | None = None,
                 settled: bool = False) -> tuple[dict[str, Any], QuerySet[ExampleScore]]:
    """The report header and the open issues: scores of currently labeled examples the detector flags and
    people have not settled (``settled=True``: the flags people settled instead). Settled flags (people
    re-checked the label, ``Example.settled``) are counted apart in the header, with the detector's
    precision as people measured it."""
    from annotator.services.queue_policy import detector_precision

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
    from annotator.services.queue_policy import DETECTOR_MIN_REVIEWED

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


def noise_issues_out(project: Project, scores: list[ExampleScore]) -> list[dict[str, Any]]:
    ids = [s.example_id for s in scores]
    given: dict[int, list[str]] = {}
    for example_id, name in ExampleLabel.objects.filter(example_id__in=ids).order_by(
        "label__position"
    ).values_list("example_id", "label__name"):
        given.setdefault(example_id, []).append(name)
    multi = project.is_multi_label
    names = project_labels(project)
    out = []
    for score in scores:
        labels = given.get(score.example_id, [])
        out.append({
            "example_id": score.example_id,
            "external_id": score.example.external_id,
            "text": score.example.text,
            "given_label": labels if multi else (labels[0] if labels else None),
            "suggested_label": score.suggested_label,
            "label_quality": score.label_quality,
            "confidence": score.confidence,
            "probs": dict(zip(names, score.probs, strict=False)),
            "settled": score.example.settled,
            "confirmations": score.example.confirmations,
        })
    return out


# --- drift ----------------------------------------------------------------------------------------------
def drift_window_out(window: DriftWindow) -> dict[str, Any]:
    # Which reference the window was compared with (services.drift_reference); windows measured before the
    # record existed were all compared with the labeled validation split.
    reference = (window.details or {}).get("reference") or {
        "kind": "labeled_split", "model_version": window.model_version.number if window.model_version else None,
        "summary": "the labeled validation split (recorded before windows named their reference)"}
    return {
        "id": window.id,
        "sequence": window.sequence,
        "start": _time(window.start),
        "end": _time(window.end),
        "n": window.n,
        "model_version": window.model_version.number if window.model_version else None,
        "class_distribution": window.class_distribution,
        "class_shift": window.class_shift,
        "mean_confidence": window.mean_confidence,
        "confidence_shift": window.confidence_shift,
        "embedding_drift": window.embedding_drift,
        "anomalies": window.anomalies,
        "details": window.details,
        "reference": reference,
        "alert": window.alert,
        "reasons": window.reasons,
        "actions": window.actions,
    }


# --- data health: conflicting near-duplicates, outliers, class health -----------------------------------
def latest_health_version(project: Project) -> ModelVersion | None:
    """The newest ready version whose metrics include data health (services.health)."""
    return (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY, metrics__has_key="health")
        .order_by("-number").first()
    )


def _current_state(example_ids: list[int]) -> tuple[dict[int, list[str]], dict[int, tuple[bool, int]]]:
    """Current labels and (settled, confirmations) of examples, in chunks that stay under any database's limit
    of query parameters."""
    labels: dict[int, list[str]] = {}
    state: dict[int, tuple[bool, int]] = {}
    for chunk in in_chunks(example_ids):
        for example_id, name in ExampleLabel.objects.filter(example_id__in=chunk).order_by(
            "example_id", "label__position"
        ).values_list("example_id", "label__name"):
            labels.setdefault(example_id, []).append(name)
        for example_id, settled, confirmations in Example.objects.filter(id__in=chunk).values_list(
            "id", "settled", "confirmations"
        ):
            state[example_id] = (settled, confirmations)
    return labels, state


def _as_names(label: Any) -> list[str]:
    if label is None:
        return []
    return [str(n) for n in label] if isinstance(label, list) else [str(label)]


def conflict_report(project: Project) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The conflict groups of the newest version with data health that are still open, best first.

    A group is closed once every member that still exists is settled and they all carry one label (a reviewer
    settled the group, or each member, to the same label); a group with fewer than two members left is
    dropped. Each group keeps its position in the version's list as ``group``.
    """
    version = latest_health_version(project)
    if version is None:
        return {"model_version": None, "threshold": None, "n_groups_found": 0, "truncated": False}, []
    conflicts = (version.metrics.get("health") or {}).get("conflicts") or {}
    stored = conflicts.get("groups") or []
    ids = sorted({int(i) for group in stored for i in group.get("example_ids", [])})
    labels, state = _current_state(ids)
    open_groups = []
    for position, group in enumerate(stored):
        members = [int(i) for i in group.get("example_ids", []) if int(i) in state]
        if len(members) < 2:
            continue
        current = {tuple(labels.get(i, [])) for i in members}
        if len(current) == 1 and all(state[i][0] for i in members):
            continue
        at_training = dict(zip((int(i) for i in group["example_ids"]), group.get("labels", []), strict=False))
        open_groups.append({
            "group": position,
            "score": group.get("score"),
            "identical": bool(group.get("identical")),
            "size": group.get("size", len(members)),
            "majority_labels": None if group.get("majority_label") is None else _as_names(group["majority_label"]),
            "members": [{"example_id": i, "labels": labels.get(i, []), "labels_at_training": _as_names(at_training.get(i)),
                         "settled": state[i][0], "confirmations": state[i][1]} for i in members],
        })
    header = {"model_version": version.number, "threshold": conflicts.get("threshold"),
              "n_groups_found": conflicts.get("n_groups", len(stored)), "truncated": bool(conflicts.get("truncated"))}
    return header, open_groups


def conflict_groups_out(project: Project, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open conflict groups (from :func:`conflict_report`) with each member's text, as the API and page show them."""
    ids = [m["example_id"] for group in groups for m in group["members"]]
    examples = {e["id"]: e for e in Example.objects.filter(project=project, id__in=ids).values("id", "external_id", "text")}
    multi = project.is_multi_label
    out = []
    for group in groups:
        majority = group["majority_labels"]
        out.append({
            **group,
            "majority_label": None if multi or not majority else majority[0],
            "members": [{**m, "external_id": examples.get(m["example_id"], {}).get("external_id", ""),
                         "text": examples.get(m["example_id"], {}).get("text", ""),
                         "label": None if multi or not m["labels"] else m["labels"][0],
                         "label_at_training": None if multi or not m["labels_at_training"]
                         else m["labels_at_training"][0]}
                        for m in group["members"]],
        })
    return out


def health_report(project: Project) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Class health and outlier summary of the newest version with data health, and its most outlying
    examples that still exist, worst first."""
    version = latest_health_version(project)
    if version is None:
        return {"model_version": None, "method": None, "classes": [], "class_imbalance": None, "too_small": [],
                "outliers": None}, []
    health = version.metrics.get("health") or {}
    outliers = dict(health.get("outliers") or {})
    top = outliers.pop("top", [])
    existing = set(Example.objects.filter(project=project, id__in=[r["example_id"] for r in top]).values_list(
        "id", flat=True))
    header = {"model_version": version.number, "method": health.get("method"), "classes": health.get("classes", []),
              "class_imbalance": health.get("class_imbalance"), "too_small": health.get("too_small", []),
              "outliers": outliers}
    return header, [row for row in top if row["example_id"] in existing]


def outlier_rows_out(project: Project, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outlier rows (from :func:`health_report`) with each example's text and current label."""
    ids = [r["example_id"] for r in rows]
    examples = {e["id"]: e for e in Example.objects.filter(project=project, id__in=ids).values("id", "external_id", "text")}
    labels, _state = _current_state(ids)
    multi = project.is_multi_label
    return [{**row, "external_id": examples[row["example_id"]]["external_id"], "text": examples[row["example_id"]]["text"],
             "labels": labels.get(row["example_id"], []),
             "label": None if multi else (labels.get(row["example_id"]) or [None])[0]}
            for row in rows if row["example_id"] in examples]
