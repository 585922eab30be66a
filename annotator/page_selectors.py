"""Read queries the HTML pages need beyond the API's selectors: job lists, the last answer to undo, file
previews, the noise report's rows with who labeled them, annotator agreement, model-version curves and
drift series. Every function returns plain data in a bounded number of queries (no query per row).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Max, Min, QuerySet

from annotator.errors import InvalidInput
from annotator.models import (
    Annotation,
    AnnotationKind,
    DriftWindow,
    Example,
    ExampleLabel,
    ExampleScore,
    Job,
    ModelVersion,
    Project,
)
from annotator.selectors import project_labels
from annotator.services.bulk import in_chunks
from annotator.services.files import decode, jsonl_lines, load_json

PREVIEW_ROWS = 8
AGREEMENT_SAMPLE = 2000  # overlapping examples the per-annotator rates are computed over (newest first)


# --- jobs -----------------------------------------------------------------------------------------------
def recent_jobs(project: Project, *, limit: int = 8) -> list[Job]:
    """The project's newest top-level jobs (a train job's scoring children show through their parent)."""
    return list(
        Job.objects.filter(project=project, parent__isnull=True)
        .defer("log", "params", "timings")
        .order_by("-id")[:limit]
    )


def job_in_project(project: Project, job_id: int) -> Job | None:
    return Job.objects.filter(project=project, pk=job_id).first()


# --- annotate -------------------------------------------------------------------------------------------
def last_queue_answer(user: AbstractBaseUser, project: Project) -> Annotation | None:
    """The caller's newest answer to a queue item of this project (what undo re-opens)."""
    return (
        Annotation.objects.filter(user=user, queue_item__project=project)
        .select_related("example", "queue_item")
        .order_by("-id")
        .first()
    )


def answer_of(user: AbstractBaseUser, project: Project, annotation_id: int) -> Annotation | None:
    return (
        Annotation.objects.filter(pk=annotation_id, user=user, queue_item__project=project)
        .select_related("example", "queue_item")
        .first()
    )


# --- import preview -------------------------------------------------------------------------------------
@dataclass
class FilePreview:
    columns: list[str]
    rows: list[list[str]]
    n_lines: int
    problems: list[dict[str, Any]] = field(default_factory=list)


def file_preview(data: bytes, fmt: str, *, n: int = PREVIEW_ROWS) -> FilePreview:
    """The columns and first ``n`` rows of an uploaded CSV or JSONL file, as text cells.

    Raises InvalidInput (with the line) for a file that is not UTF-8; a malformed row becomes a problem
    of the preview, and the import itself reports every problem.
    """
    text = decode(data)
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if fmt == "jsonl":
        return _jsonl_preview(text, n, n_lines)
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter if text.strip() else ","
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), dialect=csv.excel, delimiter=delimiter)
    try:
        header = next(reader, [])
        rows = []
        for record in reader:
            rows.append([_cell(v) for v in record])
            if len(rows) == n:
                break
    except csv.Error as error:
        raise InvalidInput([{"line": reader.line_num, "message": f"line {reader.line_num}: {error}"}]) from None
    return FilePreview(columns=header, rows=rows, n_lines=n_lines)


def _jsonl_preview(text: str, n: int, n_lines: int) -> FilePreview:
    columns: list[str] = []
    records: list[dict[str, Any]] = []
    problems = []
    for number, line in enumerate(jsonl_lines(text), 1):
        if not line.strip():
            continue
        try:
            value = load_json(line)
        except ValueError as error:
            problems.append({"line": number, "message": f"line {number}: malformed JSON ({error})"})
            value = None
        if isinstance(value, dict):
            records.append(value)
            columns.extend(key for key in value if key not in columns)
        if len(records) + len(problems) >= n:
            break
    rows = [[_cell(record.get(column)) for column in columns] for record in records]
    return FilePreview(columns=columns, rows=rows, n_lines=n_lines, problems=problems)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


# --- review: noise report ---------------------------------------------------------------------------------
def noise_issue_rows(project: Project, scores: list[ExampleScore]) -> list[dict[str, Any]]:
    """Rows of one page of the noise report: text, given and suggested labels, quality, and who labeled
    the example (the users whose answers count). Three queries for the page, whatever its size."""
    ids = [s.example_id for s in scores]
    names = project_labels(project)
    given: dict[int, list[str]] = defaultdict(list)
    for example_id, name in (
        ExampleLabel.objects.filter(example_id__in=ids).order_by("label__position")
        .values_list("example_id", "label__name")
    ):
        given[example_id].append(name)
    labelers: dict[int, list[str]] = defaultdict(list)
    for example_id, username in (
        Annotation.objects.filter(example_id__in=ids).exclude(kind=AnnotationKind.REVIEW)
        .order_by("-id").values_list("example_id", "user__username")
    ):
        if username not in labelers[example_id]:
            labelers[example_id].append(username)
    multi = project.is_multi_label
    rows = []
    for score in scores:
        suggested = [s for s in score.suggested_label.split(",") if s] if multi else [score.suggested_label]
        probs = dict(zip(names, score.probs, strict=False))
        rows.append({
            "example_id": score.example_id,
            "external_id": score.example.external_id,
            "text": score.example.text,
            "given": given.get(score.example_id, []),
            "suggested": suggested,
            "suggested_label": score.suggested_label,
            "label_quality": score.label_quality,
            "suggested_prob": max((probs.get(s, 0.0) for s in suggested), default=None),
            "labelers": labelers.get(score.example_id, []),
        })
    return rows


# --- review: agreement ------------------------------------------------------------------------------------
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
    consensus (:func:`training.noise.answer_agreement`), next to their CROWDLAB quality and agreement with
    the CROWDLAB consensus as the last training stored them (``Membership``)."""
    from annotator.services.consensus import member_quality
    from training.multiannotator import answer_agreement

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
    # Answers are compared as whole (sorted) label sets: one integer code per distinct set.
    codes: dict[tuple[str, ...], int] = {}
    code = lambda labels: codes.setdefault(tuple(sorted(labels)), len(codes))  # noqa: E731
    users = sorted({u for example_id in sample_ids for u in latest.get(example_id, {})})
    column = {u: j for j, u in enumerate(users)}
    matrix = np.full((len(sample_ids), len(users)), np.nan)
    reference = np.full(len(sample_ids), np.nan)
    for i, example_id in enumerate(sample_ids):
        for username, labels in latest.get(example_id, {}).items():
            matrix[i, column[username]] = code(labels)
        if current.get(example_id):
            reference[i] = code(current[example_id])
    rates = answer_agreement(matrix, reference)
    quality = member_quality(project)
    annotators = sorted(
        (
            {
                "username": u,
                "answered": rates["answered"][j],
                "agreement": rates["agreement_with_reference"][j] or 0.0,
                "quality": quality.get(u, {}).get("annotator_quality"),
                "crowdlab_agreement": quality.get(u, {}).get("agreement_with_consensus"),
            }
            for u, j in column.items() if rates["answered"][j]
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


# --- models -----------------------------------------------------------------------------------------------
def model_versions(project: Project) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(project=project).defer("config", "snapshot").order_by("-number"))


def learning_curve(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Macro-F1 against the number of training labels, one point per ready version, oldest first."""
    points = []
    for version in sorted(versions, key=lambda v: v.number):
        metrics = version.metrics or {}
        f1 = metrics.get("macro_f1")
        if version.status != ModelVersion.Status.READY or f1 is None:
            continue
        points.append({"x": version.n_train, "y": f1, "std": metrics.get("macro_f1_std"), "label": f"v{version.number}"})
    return points


# --- drift ------------------------------------------------------------------------------------------------
def drift_windows(project: Project, *, limit: int = 60) -> list[DriftWindow]:
    """The newest ``limit`` windows in arrival order (oldest first), for the plots."""
    windows = list(
        DriftWindow.objects.filter(project=project).defer("details").order_by("-sequence")[:limit]
    )
    return windows[::-1]


def drift_alerts(project: Project) -> QuerySet[DriftWindow]:
    return (
        DriftWindow.objects.filter(project=project, alert=True).select_related("model_version")
        .defer("details", "model_version__metrics", "model_version__config", "model_version__snapshot")
        .order_by("-sequence")
    )


# --- stopping signal ----------------------------------------------------------------------------------------
def stopping_signal(project: Project) -> dict[str, Any] | None:
    """The newest ready version's stopping signal (``ModelVersion.stability``, written by
    ``services.stability``) with ``version`` added, or None while no version has one."""
    row = (
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY, stability__has_key="message")
        .order_by("-number").values_list("number", "stability").first()
    )
    if row is None:
        return None
    number, stability = row
    return {**stability, "version": number}


def stability_curve(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Kappa of each ready version with the previous one, oldest first (versions without one are left out)."""
    points = []
    for version in sorted(versions, key=lambda v: v.number):
        kappa = (version.stability or {}).get("kappa")
        if version.status != ModelVersion.Status.READY or not isinstance(kappa, int | float):
            continue
        points.append({"x": version.number, "y": float(kappa), "threshold": version.stability.get("threshold"),
                       "label": f"v{version.number} vs v{version.stability.get('against_version')}"})
    return points
