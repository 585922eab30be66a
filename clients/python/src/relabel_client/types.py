"""The shapes of the API's main answers (docs/api.md). They are plain dicts at run time; answers may carry
more fields than listed here."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Task = Literal["single_label", "multi_label"]
Role = Literal["admin", "reviewer", "annotator"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TrainMode = Literal["auto", "frozen", "gradual", "full", "lora"]
NoiseAction = Literal["keep", "relabel", "send_to_queue"]
ExportFormat = Literal["jsonl", "csv", "labelstudio", "parquet"]

FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class Project(TypedDict, total=False):
    id: int
    name: str
    task: Task
    labels: list[str]
    settings: dict[str, Any]
    role: Role | None
    counts: dict[str, int]
    examples: int
    labeled: int
    queued: int
    model_version: int | None
    members: list[dict[str, Any]]
    created_at: str


class Member(TypedDict, total=False):
    username: str
    role: Role
    annotator_quality: float | None
    agreement_with_consensus: float | None


class Example(TypedDict, total=False):
    id: int
    external_id: str
    text: str
    source: str
    label: str | None
    labels: list[str]
    label_source: str | None
    metadata: dict[str, Any]
    observed_at: str | None
    latest_score: dict[str, Any] | None
    annotations: list[dict[str, Any]]


class Annotation(TypedDict, total=False):
    id: int
    example_id: int
    user: str
    kind: str
    label: str | None
    labels: list[str]
    note: str
    created_at: str


class ImportResult(TypedDict):
    created: int
    unchanged: int
    updated: int
    ids: list[int]


class Prediction(TypedDict, total=False):
    label: str | None
    labels: list[str]
    probs: dict[str, float]
    confidence: float


class SamplesResult(TypedDict):
    ids: list[int]
    created: int
    unchanged: int
    model_version: int | None
    predictions: list[Prediction | None] | None


class PredictResult(TypedDict):
    model_version: int
    predictions: list[Prediction]


class QueueItem(TypedDict, total=False):
    id: int
    example: dict[str, Any]
    reason: Literal["uncertain", "suspect", "drift", "random"]
    explanation: str
    priority: float
    suggestion: dict[str, Any] | None
    lease_expires_at: str


class QueueStats(TypedDict, total=False):
    pending: int
    leased: int
    done: int
    by_reason: dict[str, int]
    model_version: int | None
    rebuilt_at: str | None
    mix: dict[str, float]
    strategy: str
    cold_start: bool


class Job(TypedDict, total=False):
    id: int
    project: int
    kind: str
    status: JobStatus
    progress: float
    stage: str
    message: str
    result: dict[str, Any] | None
    error: str
    log_tail: str
    timings: dict[str, float]
    created_at: str
    started_at: str | None
    finished_at: str | None


class ModelVersion(TypedDict, total=False):
    id: int
    number: int
    version: int
    status: Literal["training", "ready", "failed"]
    mode: str
    n_train: int
    promoted: bool
    macro_f1: float | None
    macro_f1_ci: list[float] | None
    ece: float | None
    holdout: dict[str, Any]
    promotion: dict[str, Any]
    metrics: dict[str, Any]
    comparison: dict[str, Any]
    stability: dict[str, Any]


class NoiseDecision(TypedDict, total=False):
    example_id: int
    action: NoiseAction
    label: str
    labels: list[str]
    note: str
