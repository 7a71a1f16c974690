"""What the people side's API reads and writes. Validation of business rules stays in services:
these check shapes and look names up, and the services say what is wrong with the content."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from access import audit, forbidden
from access.api.fields import HumanDurationField, NameField, NameListField, StringMapField
from access.choices import Environment, RoleScope, Tier
from access.models import (
    AccessRequest,
    ApiToken,
    Approval,
    ApprovalPolicy,
    AuditEvent,
    Grant,
    Person,
    ReviewCampaign,
    ReviewItem,
    Role,
    RoleDefinition,
    Team,
)
from access.services import tokens


def _choices(choices: Any, **kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=serializers.ChoiceField(choices=choices), **kwargs)


# --- the directory ----------------------------------------------------------------------------


class PersonSerializer(serializers.ModelSerializer):
    manager = NameField(slug_field="username", read_only=True, allow_null=True)
    teams = serializers.SerializerMethodField()

    class Meta:
        model = Person
        fields = ["id", "username", "display_name", "email", "is_active", "manager", "teams"]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_teams(self, person: Person) -> list[str]:
        return sorted(m.team.name for m in person.memberships.all() if m.team.is_active)


class TeamSerializer(serializers.ModelSerializer):
    owners = NameField(slug_field="username", many=True, read_only=True)
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "description", "is_active", "owners", "members"]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_members(self, team: Team) -> list[str]:
        return sorted(m.person.username for m in team.memberships.all() if m.person.is_active)


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    email = serializers.CharField(allow_blank=True)
    is_operator = serializers.BooleanField()
    in_directory = serializers.BooleanField(help_text="False for local (break-glass) accounts.")
    teams = NameListField()


# --- roles ------------------------------------------------------------------------------------


class RoleDefinitionSerializer(serializers.ModelSerializer):
    rules = serializers.ListField(child=serializers.DictField(), required=False)
    namespaces = NameListField(required=False)

    class Meta:
        model = RoleDefinition
        fields = [
            "environment",
            "tier",
            "cluster_role",
            "rules",
            "scope",
            "namespaces",
            "allowed",
        ]


class RoleSerializer(serializers.ModelSerializer):
    definitions = RoleDefinitionSerializer(many=True, read_only=True)

    class Meta:
        model = Role
        fields = ["name", "display_name", "description", "rank", "definitions"]


class RoleDefineSerializer(serializers.Serializer):
    """What a role becomes where environment and tier match (empty = any)."""

    environment = serializers.ChoiceField(
        choices=Environment.choices, required=False, default="", allow_blank=True
    )
    tier = serializers.ChoiceField(
        choices=Tier.choices, required=False, default="", allow_blank=True
    )
    cluster_role = serializers.CharField(
        max_length=253, required=False, default="", allow_blank=True
    )
    rules = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    scope = serializers.ChoiceField(choices=RoleScope.choices, default=RoleScope.NAMESPACES)
    namespaces = NameListField(required=False, default=list)
    allowed = serializers.BooleanField(default=True)
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ObjectChangeSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["create", "update", "recreate", "delete"])
    kind = serializers.CharField()
    namespace = serializers.CharField(allow_blank=True)
    name = serializers.CharField()
    details = NameListField()


class ClusterPlanSerializer(serializers.Serializer):
    """What one cluster would see: the objects written, grants left pending, or why unread."""

    cluster = serializers.CharField()
    changes = ObjectChangeSerializer(many=True)
    pending = serializers.DictField(
        child=NameListField(), help_text="grant id -> why it would not be (fully) in force there"
    )
    error = serializers.CharField(allow_blank=True)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["pending"] = {str(k): list(v) for k, v in instance.pending.items()}
        return data


# --- approval policies ------------------------------------------------------------------------


class ApprovalPolicySerializer(serializers.ModelSerializer):
    role = NameField(
        slug_field="name", queryset=Role.objects.all(), allow_null=True, required=False
    )
    approver_teams = NameField(
        slug_field="name",
        many=True,
        queryset=Team.objects.filter(is_active=True),
        required=False,
        help_text="Members of these teams approve; none = Warden operators.",
    )
    max_duration = HumanDurationField()
    default_duration = HumanDurationField()
    break_glass_duration = HumanDurationField(allow_null=True, required=False)
    break_glass_teams = NameField(
        slug_field="name",
        many=True,
        queryset=Team.objects.filter(is_active=True),
        required=False,
        help_text="Only members of these teams may break glass (required when it is allowed).",
    )
    break_glass_roles = NameField(
        slug_field="name",
        many=True,
        queryset=Role.objects.all(),
        required=False,
        help_text="The roles break-glass may give (required when it is allowed).",
    )
    reason = serializers.CharField(write_only=True, required=False, default="", allow_blank=True)

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            *ApprovalPolicy.SETTINGS,
            "reason",
        ]
        # Uniqueness is the service's to check (and to say in words).
        validators: list[Any] = []


# --- grants -----------------------------------------------------------------------------------


class GrantSerializer(serializers.ModelSerializer):
    team = NameField(slug_field="name", read_only=True, allow_null=True)
    person = NameField(slug_field="username", read_only=True, allow_null=True)
    role = NameField(slug_field="name", read_only=True)
    created_by = NameField(slug_field="username", read_only=True, allow_null=True)
    cluster_selector = StringMapField(read_only=True)
    environments = NameListField(read_only=True)
    tiers = NameListField(read_only=True)
    clusters = NameListField(read_only=True)
    namespaces = NameListField(read_only=True)
    in_force = serializers.SerializerMethodField()

    class Meta:
        model = Grant
        fields = [
            "id",
            "team",
            "person",
            "role",
            *Grant.SCOPE,
            "source",
            "reason",
            "created_by",
            "created_at",
            "starts_at",
            "expires_at",
            "revoked_at",
            "revoke_reason",
            "in_force",
        ]

    def get_in_force(self, grant: Grant) -> bool:
        now = timezone.now()
        return (
            grant.revoked_at is None
            and (grant.starts_at is None or grant.starts_at <= now)
            and (grant.expires_at is None or grant.expires_at > now)
        )


class GrantCreateSerializer(serializers.Serializer):
    """A standing grant to a team or one person (exactly one of the two)."""

    team = NameField(
        slug_field="name", queryset=Team.objects.filter(is_active=True), required=False
    )
    person = NameField(
        slug_field="username", queryset=Person.objects.filter(is_active=True), required=False
    )
    role = NameField(slug_field="name", queryset=Role.objects.all())
    environments = _choices(Environment.choices, required=False, default=list)
    tiers = _choices(Tier.choices, required=False, default=list)
    clusters = NameListField(required=False, default=list)
    cluster_selector = StringMapField(required=False, default=dict)
    namespaces = NameListField(required=False, default=list)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    reason = serializers.CharField(max_length=2000)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if bool(data.get("team")) == bool(data.get("person")):
            raise serializers.ValidationError("Name exactly one team or one person.")
        data.setdefault("team", None)
        data.setdefault("person", None)
        return data


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class OptionalReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000)


# --- access requests --------------------------------------------------------------------------


class ReachSerializer(serializers.Serializer):
    """What a role over a scope gives on one cluster."""

    cluster = serializers.CharField()
    environment = serializers.CharField()
    tier = serializers.CharField()
    offered = serializers.BooleanField()
    what = serializers.CharField(help_text="the ClusterRole, Warden's own rules, or not offered")
    where = serializers.CharField(help_text="namespaces, cluster-wide, or —")
    namespaces = NameListField()

    def to_representation(self, reach: Any) -> dict[str, Any]:
        return {
            "cluster": reach.cluster,
            "environment": reach.environment,
            "tier": reach.tier,
            "offered": reach.definition is not None,
            "what": reach.what,
            "where": reach.where,
            "namespaces": list(reach.namespaces),
        }


class ApprovalSerializer(serializers.ModelSerializer):
    approver = NameField(slug_field="username", read_only=True)
    narrowed = serializers.DictField(read_only=True)

    class Meta:
        model = Approval
        fields = ["approver", "decision", "comment", "narrowed", "created_at"]


class AccessRequestSerializer(serializers.ModelSerializer):
    requester = NameField(slug_field="username", read_only=True)
    role = NameField(slug_field="name", read_only=True)
    approver_teams = NameField(slug_field="name", many=True, read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    duration = HumanDurationField(read_only=True)
    environments = NameListField(read_only=True)
    tiers = NameListField(read_only=True)
    clusters = NameListField(read_only=True)
    namespaces = NameListField(read_only=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "requester",
            "role",
            "environments",
            "tiers",
            "clusters",
            "namespaces",
            "duration",
            "justification",
            "ticket",
            "break_glass",
            "state",
            "approvals_required",
            "approver_teams",
            "manager_may_approve",
            "self_approval_forbidden",
            "created_at",
            "decided_at",
            "decision_comment",
            "grant",
            "expires_at",
            "ended_at",
            "extends",
            "reviewed_at",
            "review_comment",
            "approvals",
            "for_service_account",
            "covers",
        ]


class AccessRequestCreateSerializer(serializers.Serializer):
    """Ask for a role over a scope for a while, with a reason."""

    role = NameField(slug_field="name", queryset=Role.objects.all())
    environments = _choices(Environment.choices, required=False, default=list)
    tiers = _choices(Tier.choices, required=False, default=list)
    clusters = NameListField(required=False, default=list)
    namespaces = NameListField(required=False, default=list)
    duration = HumanDurationField(
        required=False, allow_null=True, default=None, help_text="empty: the policy's usual"
    )
    justification = serializers.CharField(max_length=5000, required=False, default="")
    ticket = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    break_glass = serializers.BooleanField(default=False)
    extends = serializers.IntegerField(required=False, allow_null=True, default=None)

    def scope(self) -> dict[str, Any]:
        data = self.validated_data
        return {k: data[k] for k in ("environments", "tiers", "clusters", "namespaces")}


class PreviewSerializer(serializers.Serializer):
    """Everything a requester sees before submitting, and every reason it would be refused."""

    role = serializers.CharField()
    ok = serializers.BooleanField(help_text="True: submitting would be accepted")
    problems = NameListField()
    reach = ReachSerializer(many=True)
    approvals_required = serializers.IntegerField()
    approvers = serializers.CharField(help_text="who approves, in words")
    approver_teams = NameListField()
    manager_may_approve = serializers.BooleanField()
    self_approval_forbidden = serializers.BooleanField()
    auto_approved = serializers.BooleanField()
    duration = HumanDurationField(allow_null=True)
    max_duration = HumanDurationField(allow_null=True)
    default_duration = HumanDurationField(allow_null=True)
    break_glass_allowed = serializers.BooleanField()

    def to_representation(self, preview: Any) -> dict[str, Any]:
        def span(value: Any) -> str | None:
            return HumanDurationField().to_representation(value) if value else None

        return {
            "role": preview.role.name,
            "ok": not preview.problems,
            "problems": list(preview.problems),
            "reach": ReachSerializer(preview.reach, many=True).data,
            "approvals_required": preview.approvals_required,
            "approvers": preview.approvers,
            "approver_teams": [t.name for t in preview.approver_teams],
            "manager_may_approve": preview.manager_may_approve,
            "self_approval_forbidden": preview.self_approval_forbidden,
            "auto_approved": preview.auto_approved,
            "duration": span(preview.duration),
            "max_duration": span(preview.max_duration),
            "default_duration": span(preview.default_duration),
            "break_glass_allowed": preview.break_glass_allowed,
        }


class ApproveSerializer(serializers.Serializer):
    """An approval; an approver may narrow the clusters or namespaces or shorten the time."""

    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    clusters = NameListField(required=False, allow_null=True, default=None)
    namespaces = NameListField(required=False, allow_null=True, default=None)
    duration = HumanDurationField(required=False, allow_null=True, default=None)


# --- my access --------------------------------------------------------------------------------


class HeldAccessSerializer(serializers.Serializer):
    """One grant a person holds, directly or through a team, and where it lands."""

    grant = serializers.IntegerField()
    role = serializers.CharField()
    role_display_name = serializers.CharField()
    via = serializers.CharField()
    request = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    expiring_soon = serializers.BooleanField()
    clusters = ReachSerializer(many=True)

    def to_representation(self, held: Any) -> dict[str, Any]:
        return {
            "grant": held.grant.pk,
            "role": held.grant.role.name,
            "role_display_name": held.grant.role.display_name,
            "via": held.via,
            "request": held.request.pk if held.request is not None else None,
            "expires_at": serializers.DateTimeField().to_representation(held.grant.expires_at)
            if held.grant.expires_at
            else None,
            "expiring_soon": held.expiring_soon,
            "clusters": ReachSerializer(held.clusters, many=True).data,
        }


class AuditEventSerializer(serializers.ModelSerializer):
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)

    class Meta:
        model = AuditEvent
        fields = list(audit.EVENT_FIELDS)


# --- access reviews ---------------------------------------------------------------------------


class ReviewCampaignSerializer(serializers.ModelSerializer):
    started_by = NameField(slug_field="username", read_only=True, allow_null=True)
    closed_by = NameField(slug_field="username", read_only=True, allow_null=True)
    environments = _choices(Environment.choices, required=False, default=list)

    class Meta:
        model = ReviewCampaign
        fields = [
            "id",
            "name",
            "due_on",
            "environments",
            "request_grants_older_than_days",
            "state",
            "started_by",
            "started_at",
            "closed_by",
            "closed_at",
        ]
        read_only_fields = ["state", "started_at", "closed_at"]


class ReviewItemSerializer(serializers.ModelSerializer):
    grant = GrantSerializer(read_only=True)
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    decided_by = NameField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ReviewItem
        fields = ["id", "campaign", "grant", "decision", "decided_by", "decided_at", "comment"]


class ReviewDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["kept", "revoked"])
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


# --- "Why forbidden?" -------------------------------------------------------------------------


class WhyForbiddenSerializer(serializers.Serializer):
    """A Kubernetes forbidden message (or the refused request typed in), and its cluster."""

    message = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    verb = serializers.CharField(max_length=40, required=False, default="", allow_blank=True)
    resource = serializers.CharField(max_length=253, required=False, default="", allow_blank=True)
    api_group = serializers.CharField(max_length=253, required=False, default="", allow_blank=True)
    namespace = serializers.CharField(max_length=63, required=False, default="", allow_blank=True)
    name = serializers.CharField(max_length=253, required=False, default="", allow_blank=True)
    path = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    cluster = serializers.CharField(
        max_length=63, required=False, default="", allow_blank=True, help_text="empty: the only one"
    )


class VerdictSerializer(serializers.Serializer):
    role = serializers.CharField()
    display_name = serializers.CharField()
    rank = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["allows", "denies", "unavailable", "unknown"])
    why = serializers.CharField(allow_blank=True)
    kube_role = serializers.CharField(allow_blank=True)
    rule = serializers.CharField(allow_blank=True)
    namespace = serializers.CharField(allow_blank=True)


class ExplanationSerializer(serializers.Serializer):
    attempt = serializers.CharField(help_text="what the refused request asked for, in words")
    user = serializers.CharField(allow_blank=True)
    cluster = serializers.CharField()
    verdicts = VerdictSerializer(many=True)
    smallest = serializers.CharField(allow_null=True, help_text="the smallest role that allows it")
    request = StringMapField(allow_null=True, help_text="role, cluster and namespace to request")
    already_allowed = serializers.BooleanField()
    causes = NameListField()
    notes = NameListField()

    def to_representation(self, explanation: Any) -> dict[str, Any]:
        smallest = explanation.smallest
        return {
            "attempt": explanation.attempt.describe(),
            "user": explanation.attempt.user,
            "cluster": explanation.cluster,
            "verdicts": [
                {
                    "role": v.role,
                    "display_name": v.display_name,
                    "rank": v.rank,
                    "state": v.state,
                    "why": v.why,
                    "kube_role": v.kube_role,
                    "rule": v.rule_text,
                    "namespace": v.namespace,
                }
                for v in explanation.verdicts
            ],
            "smallest": smallest.role if smallest is not None else None,
            "request": forbidden.request_query(explanation),
            "already_allowed": explanation.already_allowed,
            "causes": list(explanation.causes),
            "notes": list(explanation.notes),
        }


# --- personal API tokens ----------------------------------------------------------------------


class ApiTokenSerializer(serializers.ModelSerializer):
    owner = NameField(slug_field="username", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "owner",
            "key_id",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    days = serializers.IntegerField(min_value=1, max_value=tokens.MAX_DAYS, default=90)


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="shown this once; Warden keeps only a digest")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class QueuedSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ExtendSerializer(serializers.Serializer):
    """POST /requests/<id>/extend/: the new end (empty: one more usual duration)."""

    until = serializers.DateTimeField(required=False, allow_null=True, default=None)
