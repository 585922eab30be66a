"""Data health beyond label noise, as the newest version with data health found it and as people have settled
it since: conflicting near-duplicates (groups still open), outliers that still exist, and class health."""

from __future__ import annotations

from typing import Any

from annotator.db import in_chunks
from annotator.models import Example, ExampleLabel, ModelVersion, Project


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


def conflict_groups_with_texts(project: Project, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def outlier_rows_with_texts(project: Project, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outlier rows (from :func:`health_report`) with each example's text and current label."""
    ids = [r["example_id"] for r in rows]
    examples = {e["id"]: e for e in Example.objects.filter(project=project, id__in=ids).values("id", "external_id", "text")}
    labels, _state = _current_state(ids)
    multi = project.is_multi_label
    return [{**row, "external_id": examples[row["example_id"]]["external_id"], "text": examples[row["example_id"]]["text"],
             "labels": labels.get(row["example_id"], []),
             "label": None if multi else (labels.get(row["example_id"]) or [None])[0]}
            for row in rows if row["example_id"] in examples]
