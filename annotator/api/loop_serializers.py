"""Output shapes of the loop's API (queue, jobs and training, models, predictions, noise, drift).

The declared fields describe every answer for ``/api/schema/``, so the schema and the schemathesis run over it
check every field. Open maps (per-label figures, test statistics, stored records) are ``DictField``s. The
serializers that build an answer from a row (a model version, a noise issue, a drift window) do it in
``to_representation``; the rest describe plain data the selectors and services return.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.api.pagination import paginated
from annotator.api.serializers import ErrorOut, JobOut, iso_time
from annotator.models import DriftWindow, ModelVersion, QueueItem
from annotator.selectors.models import version_encoder, version_holdout, version_promotion


def _names(**kwargs: object) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), **kwargs)


def _shares(**kwargs: object) -> serializers.DictField:
    return serializers.DictField(child=serializers.FloatField(), **kwargs)


@extend_schema_field({
    "oneOf": [{"type": "string", "nullable": True}, {"type": "array", "items": {"type": "string"}}],
    "description": "single-label projects: the label name (null when unlabeled); multi-label: the list of names",
})
class LabelOrLabelsField(serializers.Field):
    """A label name (or null) in single-label projects, a list of names in multi-label ones."""


# --- queue ----------------------------------------------------------------------------------------------
class QueueStatsOut(serializers.Serializer):
    pending = serializers.IntegerField(help_text="items waiting, including leases that expired")
    leased = serializers.IntegerField(help_text="items under a live lease")
    done = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField(),
                                      help_text="pending and leased items by reason (uncertain, suspect, ...)")
    model_version = serializers.IntegerField(allow_null=True, help_text="number of the serving version")
    rebuilt_at = serializers.DateTimeField(allow_null=True, help_text="when the last queue rebuild finished")
    mix = _shares(help_text="the effective queue mix: share per reason, the suspect share adapted to the "
                            "detector's measured precision")
    strategy = serializers.CharField(help_text="how the uncertain share is ranked (query_strategy)")
    cold_start = serializers.BooleanField(help_text="the uncertain share is a representative sample instead")
    held_back_for_holdout = serializers.IntegerField(
        help_text="unlabeled examples the queue offers only as random items, for the holdout")


class QueueExampleOut(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    source = serializers.CharField()
    metadata = serializers.DictField()
    external_id = serializers.CharField()


class SuggestionOut(serializers.Serializer):
    label = serializers.CharField(allow_null=True, help_text="the top prediction; null when nothing is predicted")
    labels = _names()
    confidence = serializers.FloatField()


class QueueItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    example = QueueExampleOut()
    reason = serializers.ChoiceField(choices=QueueItem.Reason.values)
    explanation = serializers.CharField(allow_blank=True)
    priority = serializers.FloatField()
    suggestion = SuggestionOut(allow_null=True, help_text="null when show_suggestions is off or nothing is scored")
    lease_expires_at = serializers.DateTimeField()


class QueueSkipOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="pending: the item is back in the queue")


class QueueHeartbeatOut(serializers.Serializer):
    id = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField()


# --- jobs and training ------------------------------------------------------------------------------------
class TrainOut(serializers.Serializer):
    job = JobOut()


class TrainConflictOut(serializers.Serializer):
    errors = ErrorOut(many=True)
    job = JobOut(help_text="the training job already queued or running")


# --- models and predictions ---------------------------------------------------------------------------------
def _interval(**kwargs: object) -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2, required=False,
                                 **kwargs)


class HoldoutOut(serializers.Serializer):
    """The version measured on the stable holdout (services.holdout), or ``reason`` instead of numbers: a
    holdout too small to measure has ``n``, ``reason`` and its size and sources, and none of the figures."""

    n = serializers.IntegerField(allow_null=True, help_text="held-out labels")
    reason = serializers.CharField(required=False, help_text="why there are no numbers, e.g. \"too few "
                                                             "held-out labels to measure: ...\"")
    macro_f1 = serializers.FloatField(required=False)
    macro_f1_ci = _interval(help_text="bootstrap 95% interval [low, high]")
    accuracy = serializers.FloatField(required=False)
    accuracy_ci = _interval()
    micro_f1 = serializers.FloatField(required=False, help_text="multi-label")
    micro_f1_ci = _interval()
    subset_accuracy = serializers.FloatField(required=False, help_text="multi-label")
    subset_accuracy_ci = _interval()
    hamming_loss = serializers.FloatField(required=False, help_text="multi-label")
    hamming_loss_ci = _interval()
    ece = serializers.FloatField(required=False, help_text="after temperature scaling")
    ece_ci = _interval()
    ece_before = serializers.FloatField(required=False)
    ece_before_ci = _interval()
    per_class = serializers.ListField(child=serializers.DictField(), required=False,
                                      help_text="label, precision, recall, f1, support, each with *_ci")
    confusion_matrix = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()),
                                             required=False, help_text="rows: true labels")
    calibration = serializers.DictField(required=False, help_text="temperature, reliability bins before/after")
    slices = serializers.DictField(required=False, help_text="per example source: n, macro_f1, macro_f1_ci")
    sources = serializers.DictField(child=serializers.IntegerField(), required=False,
                                    help_text="held-out labels by origin: import, random (queue items)")
    example_sources = serializers.DictField(child=serializers.IntegerField(), required=False)
    eligible = serializers.IntegerField(required=False, help_text="labeled examples the rule may hold out")
    n_labeled = serializers.IntegerField(required=False)
    cut = serializers.FloatField(required=False, help_text="hash below which eligible examples are held out")
    rule = serializers.DictField(required=False)
    rule_text = serializers.CharField(required=False)


class PromotionOut(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["promoted", "rejected", "manual", "first version"], allow_null=True)
    evidence = serializers.DictField(help_text="the paired bootstrap on the holdout (candidate and serving "
                                               "macro-F1, difference_ci, margin, shown_worse), or a reason")
    policy = serializers.ChoiceField(choices=["auto", "manual"], allow_null=True)
    decided_at = serializers.CharField(allow_null=True)
    history = serializers.ListField(child=serializers.DictField(),
                                    help_text="every promotion of this version: reason, at, replaced_version")


class VersionEncoderOut(serializers.Serializer):
    name = serializers.CharField(allow_null=True, help_text="the operator's name of the encoder")
    fingerprint = serializers.CharField(allow_null=True,
                                        help_text="sha256 of the base weights plus preprocessing; null until ready")
    model_type = serializers.CharField(allow_null=True)
    hidden_size = serializers.IntegerField(allow_null=True)
    parameters = serializers.IntegerField(allow_null=True)
    pooling = serializers.CharField(allow_null=True)
    max_length = serializers.IntegerField(allow_null=True)


class ModelVersionOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ModelVersion.Status.values)
    mode = serializers.CharField()
    n_train = serializers.IntegerField()
    promoted = serializers.BooleanField(help_text="this version serves")
    macro_f1 = serializers.FloatField(allow_null=True, help_text="on the holdout; null when it is too small")
    macro_f1_ci = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    ece = serializers.FloatField(allow_null=True)
    holdout = HoldoutOut()
    promotion = PromotionOut()
    metrics = serializers.DictField()
    comparison = serializers.DictField()
    stability = serializers.DictField()
    content_hash = serializers.CharField()
    encoder = VersionEncoderOut(allow_null=True, help_text="the encoder the version was trained from")
    snapshot = serializers.DictField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    promoted_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, version: ModelVersion) -> dict[str, Any]:
        """One version; the context's ``project`` saves a query per version, and ``running_jobs`` (ids of the
        project's unfinished jobs) one per undecided version, when many are listed."""
        project = self.context.get("project") or version.project
        metrics = version.metrics or {}
        return super().to_representation({
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
            "holdout": version_holdout(version),
            "promotion": version_promotion(version, running_jobs=self.context.get("running_jobs")),
            "metrics": metrics,
            "comparison": version.comparison,
            # Agreement with the previous version's predictions on the stop set, and the stopping decision.
            "stability": version.stability,
            "content_hash": version.content_hash,
            "encoder": version_encoder(version),
            "snapshot": version.snapshot,
            "created_at": iso_time(version.created_at),
            "finished_at": iso_time(version.finished_at),
            "promoted_at": iso_time(version.promoted_at),
        })


class PredictionOut(serializers.Serializer):
    label = serializers.CharField(allow_null=True)
    labels = _names()
    probs = _shares()
    confidence = serializers.FloatField()


class PredictOut(serializers.Serializer):
    model_version = serializers.IntegerField()
    predictions = PredictionOut(many=True)


class SamplesOut(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField())
    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    model_version = serializers.IntegerField(allow_null=True)
    predictions = PredictionOut(many=True, allow_null=True)


# --- noise ------------------------------------------------------------------------------------------------
class NoiseClassOut(serializers.Serializer):
    label = serializers.CharField()
    n = serializers.IntegerField(help_text="labeled examples given this label")
    estimated_noise_rate = serializers.FloatField(allow_null=True, help_text="null when n is 0")
    estimated_missing_rate = serializers.FloatField(
        required=False, allow_null=True, help_text="multi-label: share of examples without the class that have it")


class DetectorVersionOut(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, help_text="null for items a reviewer sent")
    reviewed = serializers.IntegerField()
    confirmed_errors = serializers.IntegerField()
    precision = serializers.FloatField(allow_null=True)


class DetectorOut(serializers.Serializer):
    reviewed = serializers.IntegerField(help_text="answered suspect items")
    confirmed_errors = serializers.IntegerField(help_text="answers that changed the label")
    precision = serializers.FloatField(allow_null=True, help_text="null before any answer")
    per_version = DetectorVersionOut(many=True)


class ExpectedErrorsOut(serializers.Serializer):
    open = serializers.IntegerField(help_text="open flags")
    n = serializers.IntegerField(allow_null=True, help_text="how many of them are likely real errors")
    precision = serializers.FloatField(allow_null=True)
    basis = serializers.ChoiceField(choices=["model", "reviews"])
    reviewed = serializers.IntegerField(help_text="suspects answered in the window the precision comes from")


class NoiseIssueOut(serializers.Serializer):
    example_id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    given_label = LabelOrLabelsField()
    suggested_label = serializers.CharField(allow_blank=True, help_text="multi-label: the names joined by commas")
    label_quality = serializers.FloatField(allow_null=True, help_text="low: the given label is likely wrong")
    confidence = serializers.FloatField()
    probs = _shares()
    settled = serializers.BooleanField()
    confirmations = serializers.IntegerField()

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row of ``selectors.noise.noise_issue_rows``; the context's ``multi`` says whether the project is
        multi-label (the given label is then the list of names)."""
        given = row["given"]
        return {
            "example_id": row["example_id"],
            "external_id": row["external_id"],
            "text": row["text"],
            "given_label": given if self.context["multi"] else (given[0] if given else None),
            "suggested_label": row["suggested_label"],
            "label_quality": row["label_quality"],
            "confidence": row["confidence"],
            "probs": row["probs"],
            "settled": row["settled"],
            "confirmations": row["confirmations"],
        }


class NoiseReportOut(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, help_text="null before a version ran the detector")
    estimated_noise_rate = serializers.FloatField(allow_null=True)
    per_class = NoiseClassOut(many=True)
    n_labeled = serializers.IntegerField(required=False, allow_null=True,
                                         help_text="labeled examples the version checked")
    settled = serializers.IntegerField(help_text="flags people already settled, not listed among the open ones")
    detector = DetectorOut()
    suspect_share = serializers.FloatField(required=False, allow_null=True,
                                           help_text="the queue's share of suspect items now")
    expected_errors = ExpectedErrorsOut(required=False, help_text="left out with ?settled=true")
    issues = paginated("PaginatedNoiseIssueList", NoiseIssueOut(many=True))


class NoiseDecisionsOut(serializers.Serializer):
    applied = serializers.IntegerField()
    kept = serializers.IntegerField()
    relabeled = serializers.IntegerField()
    sent_to_queue = serializers.IntegerField()
    queue_items_created = serializers.IntegerField()


# --- drift ------------------------------------------------------------------------------------------------
class DriftReferenceOut(serializers.Serializer):
    """What a window was compared with (services.drift_reference); counts depend on the kind."""

    kind = serializers.ChoiceField(choices=["pool", "production_baseline", "labeled_split"])
    model_version = serializers.IntegerField(allow_null=True)
    summary = serializers.CharField()
    setting = serializers.CharField(required=False, help_text="the drift_reference setting in force")
    fallback = serializers.CharField(required=False, help_text="why the setting could not be honoured")
    became_baseline = serializers.BooleanField(required=False)
    n = serializers.IntegerField(required=False)
    n_pool = serializers.IntegerField(required=False)
    n_sampled = serializers.IntegerField(required=False)
    n_labeled = serializers.IntegerField(required=False)
    labeled_share = serializers.FloatField(required=False)
    window_sequence = serializers.IntegerField(required=False)
    built_at = serializers.CharField(required=False)


class DriftWindowOut(serializers.Serializer):
    id = serializers.IntegerField()
    sequence = serializers.IntegerField(help_text="0, 1, 2... in arrival order")
    start = serializers.DateTimeField(allow_null=True, help_text="earliest observed_at in the window")
    end = serializers.DateTimeField(allow_null=True)
    n = serializers.IntegerField()
    model_version = serializers.IntegerField(allow_null=True)
    class_distribution = _shares(help_text="share of predictions per label")
    class_shift = serializers.FloatField(allow_null=True, help_text="Jensen-Shannon distance to the reference")
    mean_confidence = serializers.FloatField(allow_null=True)
    confidence_shift = serializers.FloatField(allow_null=True, help_text="KS statistic")
    embedding_drift = serializers.FloatField(allow_null=True, help_text="MMD^2")
    anomalies = serializers.DictField()
    details = serializers.DictField(help_text="every test statistic and p-value; tests lists each test")
    reference = DriftReferenceOut()
    alert = serializers.BooleanField()
    reasons = _names()
    actions = _names(help_text="what an alert did, e.g. samples routed to the queue")

    def to_representation(self, window: DriftWindow) -> dict[str, Any]:
        version = window.model_version.number if window.model_version else None
        # Which reference the window was compared with (services.drift_reference); windows measured before the
        # record existed were all compared with the labeled validation split.
        reference = (window.details or {}).get("reference") or {
            "kind": "labeled_split", "model_version": version,
            "summary": "the labeled validation split (recorded before windows named their reference)"}
        return {
            "id": window.id,
            "sequence": window.sequence,
            "start": iso_time(window.start),
            "end": iso_time(window.end),
            "n": window.n,
            "model_version": version,
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
