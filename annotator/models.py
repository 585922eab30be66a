"""The one source of truth: projects, examples, append-only annotations, model versions, scores,
the review queue, jobs, drift windows and webhooks.

Writes go through ``annotator.services``; reads through ``annotator.selectors``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotator import project_settings

TEXT_HASH_LENGTH = 64  # sha256 hex
USER_MODEL = settings.AUTH_USER_MODEL


class Task(models.TextChoices):
    SINGLE_LABEL = "single_label", "Single label"
    MULTI_LABEL = "multi_label", "Multi label"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"


class Source(models.TextChoices):
    SEED = "seed", "Seed"
    IMPORT = "import", "Import"
    PRODUCTION = "production", "Production"


class AnnotationKind(models.TextChoices):
    IMPORT = "import", "Import"
    LABEL = "label", "Label"
    RELABEL = "relabel", "Relabel"
    REVIEW = "review", "Review decision"


class Project(models.Model):
    name = models.CharField(max_length=200)
    task = models.CharField(max_length=20, choices=Task.choices, default=Task.SINGLE_LABEL)
    # Only what the project's admins changed (validated by annotator.project_settings, which holds every
    # setting's default); read a setting with ``setting(name)``.
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Kept by the import service in the same transaction as the rows (examples are never deleted one by
    # one), so the unfiltered example list needs no COUNT over a million rows.
    example_count = models.PositiveBigIntegerField(default=0)
    serving_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the last queue rebuild decided (the effective mix after the adaptive suspect share, the query
    # strategy, cold start); leases draw reasons in proportion to this mix. Written by the rebuild only.
    queue_state = models.JSONField(default=dict, blank=True)
    # When the pending queue fell below the ``webhook_queue_low`` setting (the ``queue.low`` webhook fired
    # then); null while it is at or above it. One crossing fires once (services.webhooks.queue_low_check).
    queue_low_at = models.DateTimeField(null=True, blank=True)
    members = models.ManyToManyField(USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_multi_label(self) -> bool:
        return self.task == Task.MULTI_LABEL

    def setting(self, name: str) -> Any:
        """The project's value of setting ``name``, or its default (annotator/project_settings.py)."""
        stored = self.settings or {}
        return copy.deepcopy(stored[name]) if name in stored else project_settings.default(name)

    def all_settings(self) -> dict[str, Any]:
        """Every setting, the project's value or the default, in definition order."""
        return project_settings.effective_settings(self.settings)


class LabelClass(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_classes")
    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField()
    # What the label means and one example of it, shown on the annotate page and in its keyboard help.
    description = models.TextField(blank=True, default="", db_default="")
    example = models.TextField(blank=True, default="", db_default="")
    # A retired label keeps its position (model versions' probabilities are in position order), its
    # history and its exports, but new answers cannot choose it.
    retired = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_name_unique_per_project"),
            models.UniqueConstraint(fields=["project", "position"], name="label_position_unique_per_project"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # CROWDLAB's estimate of how often this member's labels are right (from the last version trained on
    # items several people answered); null until there is such a version.
    annotator_quality = models.FloatField(null=True, blank=True)
    agreement_with_consensus = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]


class Example(models.Model):
    # No index of its own: every composite index below starts with the project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="examples", db_index=False)
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    text_hash = models.CharField(max_length=TEXT_HASH_LENGTH)
    # seed, import and production are the known sources; clients may name others (e.g. "pool").
    source = models.CharField(max_length=50, default=Source.IMPORT)
    metadata = models.JSONField(default=dict, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Derived from the annotations (see services.annotations.current_labels_from); kept here so lists and
    # filters need no aggregation. Rewritten only by the annotation services, in the same transaction.
    labels = models.ManyToManyField(LabelClass, through="ExampleLabel", related_name="examples")
    label_source = models.CharField(max_length=20, choices=AnnotationKind.choices, blank=True, default="")
    # People re-checked the current label (a suspect re-check, a review decision, or agreeing annotators
    # with overlap) and nothing disagreeing came after: never queued as suspect again until new evidence.
    # Derived with the current label (services.annotations.settlement_from), in the same transaction.
    settled = models.BooleanField(default=False, db_default=False)  # COPY imports leave it out
    # Distinct people whose latest answer is the current label ("confirmed by N people").
    confirmations = models.PositiveSmallIntegerField(default=0, db_default=0)
    # CROWDLAB consensus of several annotators, computed at training time (services.consensus):
    # {"labels": [...], "quality": float, "through_annotation": id}. It decides the current label until
    # an answer newer than ``through_annotation`` arrives. Null for items fewer than two people answered.
    consensus = models.JSONField(null=True, blank=True)
    # Pointer to the newest score, written by the scoring job.
    # No index: nothing looks examples up by their score, and every index slows the bulk import.
    latest_score = models.ForeignKey(
        "ExampleScore", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="external_id_unique_per_project"),
        ]
        indexes = [
            models.Index(fields=["project", "source", "id"], name="example_project_source"),
            models.Index(fields=["project", "label_source", "id"], name="example_project_labeled"),
            models.Index(fields=["project", "id"], name="example_project_id"),
            models.Index(
                fields=["project", "observed_at", "id"], name="example_production_observed",
                condition=Q(source="production"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.text[:40]}"


class ExampleLabel(models.Model):
    """The current label(s) of an example, derived from its annotations."""

    # Both lookups are served by the two composite indexes below.
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="current_labels", db_index=False)
    label = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["example", "label"], name="example_label_unique")]
        indexes = [models.Index(fields=["label", "example"], name="examplelabel_label_example")]


class Annotation(models.Model):
    """Append-only: never updated or deleted by the application."""

    # (example, id) below serves lookups by example.
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="annotations", db_index=False)
    user = models.ForeignKey(USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    kind = models.CharField(max_length=20, choices=AnnotationKind.choices)
    labels = models.JSONField()  # list of label names, as given
    note = models.TextField(blank=True, default="")
    queue_item = models.ForeignKey(
        "QueueItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["example", "id"], name="annotation_example")]


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TRAINING)
    mode = models.CharField(max_length=20, blank=True, default="")
    artifact_path = models.CharField(max_length=500, blank=True, default="")
    content_hash = models.CharField(max_length=64, blank=True, default="")
    n_train = models.PositiveIntegerField(default=0)
    # The annotation snapshot trained on: highest annotation id included, counts per label and source.
    snapshot = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # Shadow comparison against the serving version at the time this one finished.
    comparison = models.JSONField(default=dict, blank=True)
    # Agreement of this version's predictions with the previous version's on the stop set (stopping signal).
    stability = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="model_number_unique")]

    def __str__(self) -> str:
        return f"v{self.number}"


class ExampleScore(models.Model):
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="scores")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    probs = models.JSONField()  # list of floats in label position order
    predicted = models.JSONField()  # list of predicted label names
    confidence = models.FloatField()
    entropy = models.FloatField()
    margin = models.FloatField()
    label_quality = models.FloatField(null=True, blank=True)
    is_issue = models.BooleanField(null=True, blank=True)
    suggested_label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["example", "model_version"], name="one_score_per_version"),
        ]
        indexes = [
            models.Index(fields=["model_version", "label_quality"], name="score_quality"),
        ]


class QueueItem(models.Model):
    class Reason(models.TextChoices):
        UNCERTAIN = "uncertain", "Uncertain"
        SUSPECT = "suspect", "Suspect label"
        DRIFT = "drift", "Drift"
        RANDOM = "random", "Random"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        LEASED = "leased", "Leased"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_items")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="queue_items")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    priority = models.FloatField(default=0.0)
    # 0..overlap-1: overlapping items for agreement are separate rows of one example.
    slot = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    explanation = models.CharField(max_length=300, blank=True, default="")
    leased_by = models.ForeignKey(
        USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The last skip: the skipper is not offered the item again for a while (others are).
    skipped_by = models.ForeignKey(
        USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    skipped_at = models.DateTimeField(null=True, blank=True)
    # For an answered suspect: did people change the label ("changed") or keep it ("confirmed")?
    outcome = models.CharField(max_length=20, blank=True, default="")
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "status", "-priority", "id"], name="queue_next"),
            # Leases draw each reason's share in priority order.
            models.Index(fields=["project", "status", "reason", "-priority", "id"], name="queue_next_by_reason"),
            models.Index(fields=["status", "lease_expires_at"], name="queue_lease_expiry"),
        ]
        constraints = [
            # One open item per example and slot; done or cancelled ones are history.
            models.UniqueConstraint(
                fields=["example", "slot"],
                condition=Q(status__in=["pending", "leased"]),
                name="one_open_queue_item_per_slot",
            ),
        ]


class Job(models.Model):
    class Kind(models.TextChoices):
        TRAIN = "train", "Train"
        SCORE = "score", "Score"
        NOISE = "noise", "Noise"
        QUEUE_REBUILD = "queue_rebuild", "Queue rebuild"
        DRIFT = "drift", "Drift"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=100, blank=True, default="")
    message = models.CharField(max_length=500, blank=True, default="")
    log = models.TextField(blank=True, default="")  # tail only
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    timings = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set once the task reached the broker; a queued job without it is sent again when the broker is back.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Written every few seconds by the task working on the job; a stale one means its worker is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "kind", "status"], name="job_project_kind_status")]
        constraints = [
            # Never two training jobs for one project at once.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(kind="train", status__in=["queued", "running"]),
                name="one_active_training_job",
            ),
        ]


class DriftWindow(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drift_windows")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    sequence = models.PositiveIntegerField()  # 0, 1, 2... in arrival order
    first_example = models.ForeignKey(Example, null=True, on_delete=models.SET_NULL, related_name="+")
    last_example = models.ForeignKey(Example, null=True, on_delete=models.SET_NULL, related_name="+")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    n = models.PositiveIntegerField()
    class_distribution = models.JSONField(default=dict)
    class_shift = models.FloatField(null=True, blank=True)
    mean_confidence = models.FloatField(null=True, blank=True)
    confidence_shift = models.FloatField(null=True, blank=True)
    embedding_drift = models.FloatField(null=True, blank=True)
    anomalies = models.JSONField(default=dict)
    details = models.JSONField(default=dict)  # test statistics and p-values
    alert = models.BooleanField(default=False)
    reasons = models.JSONField(default=list)
    actions = models.JSONField(default=list)  # what the alert triggered (e.g. items routed to the queue)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sequence"], name="drift_window_sequence_unique"),
        ]


class WebhookEvent(models.TextChoices):
    """What a webhook endpoint can subscribe to (docs/webhooks.md documents each body's ``data``)."""

    JOB_FINISHED = "job.finished", "A job finished"
    JOB_FAILED = "job.failed", "A job failed"
    VERSION_PROMOTED = "version.promoted", "A model version was promoted"
    DRIFT_ALERT = "drift.alert", "A drift window alerted"
    QUEUE_LOW = "queue.low", "The queue is running low"


class WebhookEndpoint(models.Model):
    """A URL of a project's that is told about the events it chose. The secret signs every body; it is
    shown to an admin when the endpoint is made (or the secret rotated) and never again, nor logged."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    secret = models.CharField(max_length=100)
    events = models.JSONField(default=list)  # WebhookEvent values
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "id"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one endpoint, with the outcome of its last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"  # the target resolved to an address the operator does not allow

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=50)
    payload = models.JSONField()  # the body, sent as compact JSON with sorted keys
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)  # of the last attempt
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When the next attempt is due; while an attempt runs, when it is given up as lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_log"),
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due",
                         condition=Q(status="pending")),
        ]
