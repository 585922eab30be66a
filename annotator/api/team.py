"""REST API v1, the team: per annotator answers, time per item, agreement, CROWDLAB quality and the share of
their labels a review changed; Cohen's kappa per pair and Fleiss' kappa for the team (reviewers and admins)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api.views import ERRORS
from annotator.models import Role
from annotator.selectors import access
from annotator.selectors import team as team_selectors


class TeamMemberOut(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField(allow_null=True, help_text="null for someone who answered and is no longer a member")
    answers = serializers.IntegerField(help_text="every annotation they made in the project")
    by_kind = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="answers by kind: queue (through a queue item), manual (label or relabel without one), review "
                  "(review decisions), import, and any other annotation kind under its own name",
    )
    median_seconds = serializers.FloatField(
        allow_null=True, help_text="median gap between their consecutive answers (imports and reviews aside), gaps over "
                                   "break_seconds left out; no lease start is stored per answer",
    )
    timed_answers = serializers.IntegerField(help_text="gaps the median is over")
    overlap_items = serializers.IntegerField(help_text="sampled items they answered that two or more people answered")
    agreement_with_consensus = serializers.FloatField(
        allow_null=True, help_text="share of their latest answers on those items equal to the current label",
    )
    crowdlab_quality = serializers.FloatField(allow_null=True, help_text="CROWDLAB annotator quality, last training")
    crowdlab_agreement = serializers.FloatField(
        allow_null=True, help_text="agreement with the CROWDLAB consensus, last training",
    )
    labels = serializers.IntegerField(help_text="their answers other than review decisions")
    reviewed = serializers.IntegerField(help_text="of those, answers a later review or suspect re-check looked at")
    changed_by_review = serializers.IntegerField(help_text="of those, answers the latest correction changed")
    changed_share = serializers.FloatField(allow_null=True, help_text="changed_by_review / labels")


class KappaPairOut(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    n = serializers.IntegerField(help_text="items both answered")
    agreement = serializers.FloatField(help_text="observed share of equal answers")
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null when undefined or n < 2")


class TeamOut(serializers.Serializer):
    annotators = TeamMemberOut(many=True)
    answer_kinds = serializers.ListField(child=serializers.CharField())
    pairs = KappaPairOut(many=True)
    fleiss_kappa = serializers.FloatField(allow_null=True, help_text="over items with two or more answers")
    overlap_items = serializers.IntegerField(help_text="items with two or more answers the agreement is over")
    overlap_sample = serializers.IntegerField(help_text="at most this many of the newest such items are used")
    break_seconds = serializers.IntegerField(help_text="a longer gap between answers is a break")


class ProjectTeamApi(APIView):
    @extend_schema(responses={200: TeamOut, **ERRORS}, summary="Each annotator's work and agreement (reviewer)")
    def get(self, request: Request, project_id: int) -> Response:
        project = access.project_for(request.user, project_id, role=Role.REVIEWER)
        return Response(team_selectors.team_report(project))
