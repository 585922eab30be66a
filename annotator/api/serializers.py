"""Input and output shapes of the API. Outputs are built by plain functions (fast on big pages); the
serializer classes describe the same shapes for the OpenAPI schema and validate the small inputs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from annotator.models import Annotation, Example, ExampleScore, Job, Project


# --- inputs -------------------------------------------------------------------------------------------
class TokenIn(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)


class UserIn(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True)


class LabelIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                        help_text="what the label means; shown to annotators")
    example = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                    help_text="one example text of the label")


class ProjectIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    task = serializers.ChoiceField(choices=["single_label", "multi_label"])
    labels = serializers.ListField(
        child=serializers.JSONField(),
        help_text='label names, or objects {"name", "description"?, "example"?}; the two forms may be mixed')
    settings = serializers.DictField(required=False)


class LabelEditIn(serializers.Serializer):
    name = serializers.CharField(help_text="the label to change; a name the project lacks adds a label")
    new_name = serializers.CharField(required=False, help_text="rename: every annotation keeps its label")
    description = serializers.CharField(required=False, allow_blank=True)
    example = serializers.CharField(required=False, allow_blank=True)
    retired = serializers.BooleanField(required=False,
                                       help_text="true: kept in history and exports, not choosable for new answers")


class ProjectSettingsIn(serializers.Serializer):
    settings = serializers.DictField(required=False)
    labels = LabelEditIn(many=True, required=False, help_text="label edits, applied all or nothing")


class MemberIn(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=["admin", "reviewer", "annotator"])


class ExampleRowIn(serializers.Serializer):
    # null is accepted for every optional field and means "not given" (an exported row carries nulls).
    text = serializers.CharField()
    external_id = serializers.CharField(required=False, allow_null=True)
    label = serializers.CharField(required=False, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    source = serializers.CharField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    observed_at = serializers.DateTimeField(required=False, allow_null=True)


class AnnotationIn(serializers.Serializer):
    label = serializers.CharField(required=False)
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    note = serializers.CharField(required=False, allow_blank=True)


# --- outputs ------------------------------------------------------------------------------------------
class ErrorOut(serializers.Serializer):
    index = serializers.IntegerField(required=False)
    field = serializers.CharField(required=False)
    message = serializers.CharField()


class ErrorsOut(serializers.Serializer):
    errors = ErrorOut(many=True)


class ServiceHealthOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"], help_text="degraded (503) when the database is down")
    database = serializers.ChoiceField(choices=["ok", "down"])
    broker = serializers.ChoiceField(choices=["ok", "down"])


class TokenOut(serializers.Serializer):
    token = serializers.CharField()


class UserOut(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()


class MemberOut(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField()
    # Listed by GET /projects/{id}/members/; null until a version was trained on items two or more people answered.
    annotator_quality = serializers.FloatField(
        required=False, allow_null=True,
        help_text="CROWDLAB's estimate (0-1) of how often this member's labels are right, from the last training "
                  "on items two or more people answered; null until then")
    agreement_with_consensus = serializers.FloatField(
        required=False, allow_null=True,
        help_text="share of this member's answers equal to the CROWDLAB consensus at the last training; null until then")


class EncoderOut(serializers.Serializer):
    name = serializers.CharField(help_text="the project setting `encoder`: a name from the operator's list")
    model_type = serializers.CharField(required=False)
    hidden_size = serializers.IntegerField(required=False, help_text="width of the text embedding")
    parameters = serializers.IntegerField(required=False, help_text="parameters in the weight files")
    layers = serializers.IntegerField(required=False, allow_null=True)
    max_positions = serializers.IntegerField(required=False, allow_null=True,
                                             help_text="the config's max_position_embeddings")
    max_tokens = serializers.IntegerField(required=False, allow_null=True,
                                          help_text="the highest max_length this encoder accepts")
    vocab_size = serializers.IntegerField(required=False, allow_null=True)
    error = serializers.CharField(allow_null=True, help_text="why the encoder cannot be used now; null when it can")


class LabelOut(serializers.Serializer):
    name = serializers.CharField()
    position = serializers.IntegerField(help_text="the label's index in every probability list")
    description = serializers.CharField()
    example = serializers.CharField()
    retired = serializers.BooleanField()


class ProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    task = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField(),
                                   help_text="every label name in position order, retired ones included")
    label_classes = LabelOut(many=True, help_text="the labels with their descriptions, examples and retired flag")
    settings = serializers.DictField()
    role = serializers.CharField(help_text="the caller's role in the project")
    counts = serializers.DictField(child=serializers.IntegerField())
    examples = serializers.IntegerField()
    labeled = serializers.IntegerField()
    queued = serializers.IntegerField()
    model_version = serializers.IntegerField(allow_null=True, help_text="number of the serving model version")
    members = MemberOut(many=True, required=False)
    encoder = EncoderOut(required=False, help_text="the encoder setting's figures (one project's answers only)")
    created_at = serializers.DateTimeField()


class ImportOut(serializers.Serializer):
    created = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    updated = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())


class LabelStudioResultOut(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField(help_text="always choices")
    from_name = serializers.CharField()
    to_name = serializers.CharField()
    origin = serializers.CharField()
    value = serializers.DictField(help_text='{"choices": [label names]}')


class LabelStudioAnswerOut(serializers.Serializer):
    user = serializers.CharField()
    kind = serializers.CharField()
    note = serializers.CharField()


class LabelStudioAnnotationOut(serializers.Serializer):
    id = serializers.IntegerField()
    result = LabelStudioResultOut(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    was_cancelled = serializers.BooleanField()
    ground_truth = serializers.BooleanField()
    relabel = LabelStudioAnswerOut(help_text="who gave the answer here, its kind and note (Label Studio ignores it)")


class LabelStudioPredictionOut(serializers.Serializer):
    model_version = serializers.CharField()
    score = serializers.FloatField()
    result = LabelStudioResultOut(many=True)


class LabelStudioTaskOut(serializers.Serializer):
    """One task of the Label Studio export (``?format=labelstudio``)."""

    id = serializers.IntegerField()
    data = serializers.DictField(help_text="text, and the data fields a Label Studio import brought")
    meta = serializers.DictField(help_text="the example's metadata; relabel: external_id, source, observed_at")
    annotations = LabelStudioAnnotationOut(many=True)
    predictions = LabelStudioPredictionOut(many=True)


class ScoreOut(serializers.Serializer):
    model_version = serializers.IntegerField()
    probs = serializers.DictField(child=serializers.FloatField())
    predicted = serializers.ListField(child=serializers.CharField())
    confidence = serializers.FloatField()
    entropy = serializers.FloatField()
    margin = serializers.FloatField()
    label_quality = serializers.FloatField(allow_null=True)
    is_issue = serializers.BooleanField(allow_null=True)
    suggested_label = serializers.CharField(allow_blank=True)


class AnnotationOut(serializers.Serializer):
    id = serializers.IntegerField()
    example_id = serializers.IntegerField()
    user = serializers.CharField()
    kind = serializers.CharField()
    label = serializers.CharField(allow_null=True)
    labels = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class ExampleOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    source = serializers.CharField()
    metadata = serializers.DictField()
    observed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    label = serializers.CharField(allow_null=True)
    labels = serializers.ListField(child=serializers.CharField())
    label_source = serializers.CharField(allow_null=True)
    latest_score = ScoreOut(allow_null=True)


class ExampleDetailOut(ExampleOut):
    annotations = AnnotationOut(many=True)


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    stage = serializers.CharField()
    message = serializers.CharField()
    result = serializers.DictField()
    error = serializers.CharField()
    log_tail = serializers.CharField()
    timings = serializers.DictField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


def iso_time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def score_out(score: ExampleScore | None, label_names: list[str]) -> dict[str, Any] | None:
    if score is None:
        return None
    return {
        "model_version": score.model_version.number,
        "probs": dict(zip(label_names, score.probs, strict=False)),
        "predicted": score.predicted,
        "confidence": score.confidence,
        "entropy": score.entropy,
        "margin": score.margin,
        "label_quality": score.label_quality,
        "is_issue": score.is_issue,
        "suggested_label": score.suggested_label,
    }


def example_out(example: Example, *, multi: bool, label_names: list[str]) -> dict[str, Any]:
    names = [link.label.name for link in example.current_labels.all()]
    return {
        "id": example.id,
        "external_id": example.external_id,
        "text": example.text,
        "source": example.source,
        "metadata": example.metadata,
        "observed_at": iso_time(example.observed_at),
        "created_at": iso_time(example.created_at),
        "label": None if multi or not names else names[0],
        "labels": names,
        "label_source": example.label_source or None,
        "latest_score": score_out(example.latest_score, label_names),
    }


def annotation_out(annotation: Annotation, *, multi: bool) -> dict[str, Any]:
    return {
        "id": annotation.id,
        "example_id": annotation.example_id,
        "user": annotation.user.username,
        "kind": annotation.kind,
        "label": None if multi else annotation.labels[0],
        "labels": annotation.labels,
        "note": annotation.note,
        "created_at": iso_time(annotation.created_at),
    }


def job_out(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "project": job.project_id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 4),
        "stage": job.stage,
        "message": job.message,
        "result": job.result,
        "error": job.error,
        "log_tail": job.log[-4000:],
        "timings": job.timings,
        "created_at": iso_time(job.created_at),
        "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at),
    }


def project_out(project: Project, *, role: str | None, counts: dict[str, int], labels: list[dict[str, Any]],
                members: list[dict[str, Any]] | None = None, encoder: dict[str, Any] | None = None) -> dict[str, Any]:
    serving = project.serving_version
    out = {
        "id": project.id,
        "name": project.name,
        "task": project.task,
        "labels": [label["name"] for label in labels],
        "label_classes": [{key: label[key] for key in ("name", "position", "description", "example", "retired")}
                          for label in labels],
        "settings": project.all_settings(),
        "role": role,
        "counts": counts,
        "examples": counts.get("examples"),
        "labeled": counts.get("labeled"),
        "queued": counts.get("queued"),
        "model_version": serving.number if serving else None,
        "created_at": iso_time(project.created_at),
    }
    if members is not None:
        out["members"] = members
    if encoder is not None:
        out["encoder"] = encoder
    return out
