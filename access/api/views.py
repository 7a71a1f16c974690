"""The people side of the REST API: parse, check permission with access.permissions, call the
same service as the page does, render. No rule lives here."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import fleet, permissions, selectors, services
from access.api import filters
from access.api import serializers as s
from access.choices import Decision
from access.models import (
    AccessRequest,
    ApiToken,
    ApprovalPolicy,
    AuditEvent,
    Membership,
    Person,
    ReviewCampaign,
    Role,
    RoleDefinition,
    Team,
)
from access.permissions import IsOperator
from access.services import catalogue, requests, tokens
from access.services import reviews as review_service


def _plans(plans: list[fleet.ClusterPlan]) -> Response:
    return Response(s.ClusterPlanSerializer(plans, many=True).data)


PLAN_PARAMETER = OpenApiParameter(
    "plan", bool, description="1: answer with the per-cluster plan, change nothing"
)


# --- me ---------------------------------------------------------------------------------------


class MeView(APIView):
    """Who the token or session belongs to."""

    @extend_schema(responses=s.MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        person = permissions.person_of(user)
        teams = [t.team.name for t in selectors.teams_of(person)] if person is not None else []
        return Response(
            s.MeSerializer(
                {
                    "username": user.get_username(),
                    "display_name": person.display_name if person else "",
                    "email": person.email if person else getattr(user, "email", ""),
                    "is_operator": permissions.is_operator(user),
                    "in_directory": person is not None,
                    "teams": teams,
                }
            ).data
        )


class MyAccessView(APIView):
    """Every grant in force for me — personal, from a request, or through a team — and where."""

    @extend_schema(responses=s.HeldAccessSerializer(many=True))
    def get(self, request: Request) -> Response:
        person = permissions.person_of(request.user)
        held = selectors.access_of(person) if person is not None else []
        return Response(s.HeldAccessSerializer(held, many=True).data)


# --- the directory ----------------------------------------------------------------------------


class PersonViewSet(viewsets.ReadOnlyModelViewSet):
    """People mirrored from the directory (read-only: the directory is the truth)."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.PersonSerializer
    filterset_class = filters.PersonFilter

    def get_queryset(self) -> QuerySet[Person]:
        memberships = Membership.objects.select_related("team").order_by("team__name")
        return (
            Person.objects.select_related("manager")
            .prefetch_related(Prefetch("memberships", queryset=memberships))
            .order_by("username", "id")
            .distinct()
        )


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams (directory groups) with their effective members and their owners (leads)."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.TeamSerializer
    filterset_class = filters.TeamFilter

    def get_queryset(self) -> QuerySet[Team]:
        members = Membership.objects.select_related("person")
        return Team.objects.prefetch_related(
            Prefetch("memberships", queryset=members),
            Prefetch("owners", queryset=Person.objects.order_by("username")),
        ).order_by("name", "id")


# --- roles ------------------------------------------------------------------------------------


class RoleSaveSerializer(serializers.ModelSerializer):
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)

    class Meta:
        model = Role
        fields = ["name", "display_name", "description", "rank", "reason"]
        validators: list[Any] = []


class RoleRemoveDefinitionSerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, default="", allow_blank=True)
    tier = serializers.CharField(required=False, default="", allow_blank=True)
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class RoleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The role catalogue: readable by everyone logged in; operators define it, plan first."""

    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    serializer_class = s.RoleSerializer
    queryset = Role.objects.prefetch_related("definitions").order_by("rank", "name")
    filterset_fields = ["name"]

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsOperator()]

    @extend_schema(request=RoleSaveSerializer, responses={201: s.RoleSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(RoleSaveSerializer, request)
        role = catalogue.save_role(None, actor=request.user, **data)
        return Response(s.RoleSerializer(role).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RoleSaveSerializer, responses=s.RoleSerializer)
    def update(self, request: Request, name: str) -> Response:
        role = self.get_object()
        data = _valid(RoleSaveSerializer, request)
        role = catalogue.save_role(role, actor=request.user, **data)
        return Response(s.RoleSerializer(self.get_object()).data)

    @extend_schema(
        request=s.RoleDefineSerializer,
        parameters=[PLAN_PARAMETER],
        responses={200: s.RoleSerializer, 202: s.ClusterPlanSerializer(many=True)},
        description="Define what the role becomes where environment and tier match. With "
        "?plan=1 nothing changes and the answer is each affected cluster's diff.",
    )
    @action(detail=True, methods=["post"])
    def define(self, request: Request, name: str) -> Response:
        role = self.get_object()
        data = _valid(s.RoleDefineSerializer, request)
        where = {"environment": data.pop("environment"), "tier": data.pop("tier")}
        reason = data.pop("reason")
        values = services.grants.clean_definition(**data)
        if _wants_plan(request):
            plans = fleet.plan_role_definition(role, **where, **values)
            return Response(
                s.ClusterPlanSerializer(plans, many=True).data, status=status.HTTP_202_ACCEPTED
            )
        services.set_role_definition(role, actor=request.user, reason=reason, **where, **values)
        return Response(s.RoleSerializer(self.get_object()).data)

    @extend_schema(request=s.RoleDefineSerializer, responses=s.ClusterPlanSerializer(many=True))
    @action(detail=True, methods=["post"])
    def plan(self, request: Request, name: str) -> Response:
        """The per-cluster diff a definition would cause; nothing changes."""
        role = self.get_object()
        data = _valid(s.RoleDefineSerializer, request)
        where = {"environment": data.pop("environment"), "tier": data.pop("tier")}
        data.pop("reason")
        values = services.grants.clean_definition(**data)
        return _plans(fleet.plan_role_definition(role, **where, **values))

    @extend_schema(request=RoleRemoveDefinitionSerializer, responses=s.RoleSerializer)
    @action(detail=True, methods=["post"], url_path="remove-definition")
    def remove_definition(self, request: Request, name: str) -> Response:
        role = self.get_object()
        data = _valid(RoleRemoveDefinitionSerializer, request)
        definition = get_object_or_404(
            RoleDefinition, role=role, environment=data["environment"], tier=data["tier"]
        )
        services.remove_role_definition(definition, actor=request.user, reason=data["reason"])
        return Response(s.RoleSerializer(self.get_object()).data)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _wants_plan(request: Request) -> bool:
    return request.query_params.get("plan", "").lower() in ("1", "true", "yes")


# --- approval policies ------------------------------------------------------------------------


class ApprovalPolicyViewSet(viewsets.ModelViewSet):
    """Who approves where (operators); every change is audited like the admin's."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.ApprovalPolicySerializer
    permission_classes = [IsAuthenticated, IsOperator]
    filterset_fields = ["environment", "tier"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[ApprovalPolicy]:
        return (
            ApprovalPolicy.objects.select_related("role")
            .prefetch_related("approver_teams", "break_glass_teams", "break_glass_roles")
            .order_by("environment", "tier", "name", "id")
        )

    def perform_create(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = catalogue.save_policy(None, actor=self.request.user, **data)

    def perform_update(self, serializer: Any) -> None:
        current = serializer.instance
        many = (*ApprovalPolicy.TEAM_FIELDS, *ApprovalPolicy.ROLE_FIELDS)
        data = {
            **{
                name: list(getattr(current, name).all()) if name in many else getattr(current, name)
                for name in ApprovalPolicy.SETTINGS
            },
            **serializer.validated_data,
        }
        serializer.instance = catalogue.save_policy(current, actor=self.request.user, **data)

    def perform_destroy(self, instance: ApprovalPolicy) -> None:
        catalogue.delete_policy(instance, actor=self.request.user)


# --- grants -----------------------------------------------------------------------------------


class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Operators see and change every grant; everyone else sees the grants they hold."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.GrantSerializer
    filterset_class = filters.GrantFilter

    def get_queryset(self) -> QuerySet[Any]:
        return (
            permissions.grants_visible_to(self.request.user)
            .select_related("role", "team", "person", "created_by")
            .order_by("-created_at", "-id")
        )

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsAuthenticated()]
        # Checked before the object is looked up: 403, not 404, like the grant pages.
        return [IsAuthenticated(), IsOperator()]

    def get_object(self) -> Any:
        return permissions.get_grant_for_viewer(self.request.user, self.kwargs["pk"])

    @extend_schema(request=s.GrantCreateSerializer, responses={201: s.GrantSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(s.GrantCreateSerializer, request)
        grant = services.grant_access(actor=request.user, **data)
        return Response(s.GrantSerializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.GrantCreateSerializer, responses=s.ClusterPlanSerializer(many=True))
    @action(detail=False, methods=["post"])
    def plan(self, request: Request) -> Response:
        """What a new grant would write on each cluster it reaches; nothing changes."""
        data = _valid(s.GrantCreateSerializer, request)
        data.pop("reason")
        scope = services.grants.clean_scope(
            **{k: data.pop(k) for k in list(data) if k in SCOPE_FIELDS}
        )
        return _plans(fleet.plan_new_grant(**data, **scope))

    @extend_schema(request=s.ReasonSerializer, responses=s.GrantSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        grant = permissions.get_grant_for_operator(request.user, int(pk))
        data = _valid(s.ReasonSerializer, request)
        grant = services.revoke_grant(grant, actor=request.user, reason=data["reason"])
        return Response(s.GrantSerializer(grant).data)

    @extend_schema(responses=s.ClusterPlanSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="revoke-plan")
    def revoke_plan(self, request: Request, pk: str) -> Response:
        """What revoking this grant would remove from each cluster; nothing changes."""
        grant = permissions.get_grant_for_operator(request.user, int(pk))
        return _plans(fleet.plan_revoke(grant))


SCOPE_FIELDS = ("environments", "tiers", "clusters", "cluster_selector", "namespaces")


# --- access requests --------------------------------------------------------------------------


class AccessRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Requests a user may see: their own, those they may decide or decided; operators all."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.AccessRequestSerializer
    filterset_class = filters.AccessRequestFilter

    def get_queryset(self) -> QuerySet[AccessRequest]:
        return _with_details(permissions.requests_visible_to(self.request.user)).order_by(
            "-created_at", "-id"
        )

    def get_object(self) -> AccessRequest:
        # 404 for a request the user may not see: its existence is not revealed.
        return permissions.get_request_for_viewer(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(
        request=s.AccessRequestCreateSerializer,
        responses={201: s.AccessRequestSerializer},
        description="File a request after the same checks as the preview; a policy may grant "
        "it at once (state active).",
    )
    def create(self, request: Request) -> Response:
        person = permissions.require_person(request.user)
        form = s.AccessRequestCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        extends = None
        if data["extends"]:
            extends = AccessRequest.objects.filter(pk=data["extends"], requester=person).first()
            if extends is None:
                raise ValidationError(f"You have no request #{data['extends']} to extend.")
        req = requests.submit_request(
            requester=person,
            role=data["role"],
            justification=data["justification"],
            duration=data["duration"],
            ticket=data["ticket"],
            break_glass=data["break_glass"],
            actor=request.user,
            extends=extends,
            **form.scope(),
        )
        return Response(
            s.AccessRequestSerializer(self.get_object_for(req.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    def get_object_for(self, pk: int) -> AccessRequest:
        return _with_details(AccessRequest.objects.filter(pk=pk)).get()

    @extend_schema(request=s.AccessRequestCreateSerializer, responses=s.PreviewSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Exactly what a request would grant on which cluster, who approves, and why it would
        be refused; nothing is filed."""
        person = permissions.require_person(request.user)
        form = s.AccessRequestCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        preview = requests.preview_request(
            person,
            data["role"],
            duration=data["duration"],
            break_glass=data["break_glass"],
            **form.scope(),
        )
        return Response(s.PreviewSerializer(preview).data)

    @extend_schema(responses=s.AccessRequestSerializer(many=True))
    @action(detail=False, methods=["get"])
    def inbox(self, request: Request) -> Response:
        """Pending requests I may decide now, oldest first."""
        pending = _with_details(permissions.inbox_for(request.user)).order_by("created_at", "id")
        page = self.paginate_queryset(pending)
        return self.get_paginated_response(s.AccessRequestSerializer(page, many=True).data)

    def _decided(self, req: AccessRequest) -> Response:
        return Response(s.AccessRequestSerializer(self.get_object_for(req.pk)).data)

    @extend_schema(request=s.ApproveSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        req = self.get_object()
        data = _valid(s.ApproveSerializer, request)
        return self._decided(
            requests.approve_request(
                req,
                request.user,
                comment=data["comment"],
                clusters=data["clusters"] or None,
                namespaces=data["namespaces"] or None,
                duration=data["duration"],
            )
        )

    @extend_schema(request=s.CommentSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def deny(self, request: Request, pk: str) -> Response:
        req = self.get_object()
        data = _valid(s.CommentSerializer, request)
        return self._decided(requests.deny_request(req, request.user, comment=data["comment"]))

    @extend_schema(request=s.OptionalReasonSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        req = self.get_object()
        data = _valid(s.OptionalReasonSerializer, request)
        return self._decided(requests.cancel_request(req, request.user, reason=data["reason"]))

    @extend_schema(request=s.OptionalReasonSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str) -> Response:
        """End active access early ("I'm done", or an approver or operator)."""
        req = self.get_object()
        data = _valid(s.OptionalReasonSerializer, request)
        return self._decided(requests.end_access(req, request.user, reason=data["reason"]))

    @extend_schema(request=s.ExtendSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk: str) -> Response:
        """The requester extends access in force, where its approval policy allows it: to
        `until`, or by the policy's usual duration; never past its longest duration in all."""
        req = self.get_object()
        data = _valid(s.ExtendSerializer, request)
        return self._decided(requests.extend_access(req, request.user, until=data["until"]))

    @extend_schema(request=s.CommentSerializer, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def review(self, request: Request, pk: str) -> Response:
        """Review break-glass access after the fact."""
        req = self.get_object()
        data = _valid(s.CommentSerializer, request)
        return self._decided(
            requests.review_break_glass(req, request.user, comment=data["comment"])
        )


def _with_details(queryset: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    return (
        queryset.select_related("requester", "role")
        .prefetch_related("approver_teams", "approvals__approver")
        .annotate(approval_count=Count("approvals", filter=Q(approvals__decision=Decision.APPROVE)))
    )


# --- audit ------------------------------------------------------------------------------------


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail (operators), newest first; filter by action prefix, actor, object, time."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.AuditEventSerializer
    permission_classes = [IsAuthenticated, IsOperator]
    filterset_class = filters.AuditEventFilter
    lookup_field = "seq"
    queryset = AuditEvent.objects.order_by("-seq")


# --- access reviews ---------------------------------------------------------------------------


class StartCampaignSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    due_on = serializers.DateField()
    environments = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    request_grants_older_than_days = serializers.IntegerField(
        required=False, allow_null=True, default=None
    )


class ReviewCampaignViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Access-review campaigns (operators): start, follow, close."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.ReviewCampaignSerializer
    permission_classes = [IsAuthenticated, IsOperator]
    filterset_fields = ["state"]
    queryset = ReviewCampaign.objects.select_related("started_by", "closed_by").order_by(
        "-started_at", "-id"
    )

    def get_object(self) -> ReviewCampaign:
        return permissions.get_campaign_for_operator(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(request=StartCampaignSerializer, responses={201: s.ReviewCampaignSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(StartCampaignSerializer, request)
        campaign = review_service.start_campaign(actor=request.user, **data)
        return Response(s.ReviewCampaignSerializer(campaign).data, status=201)

    @extend_schema(request=None, responses=s.ReviewCampaignSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        """Close the campaign; nothing is revoked by closing it."""
        campaign = review_service.close_campaign(self.get_object(), actor=request.user)
        return Response(s.ReviewCampaignSerializer(campaign).data)

    @extend_schema(responses=s.ReviewItemSerializer(many=True))
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str) -> Response:
        campaign = self.get_object()
        page = self.paginate_queryset(
            selectors.review_items_with_details(campaign.items.all()).order_by("id")
        )
        return self.get_paginated_response(s.ReviewItemSerializer(page, many=True).data)


class ReviewItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The review items I decide (as a lead; operators also those nobody leads)."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.ReviewItemSerializer
    filterset_class = filters.ReviewItemFilter

    def get_queryset(self) -> QuerySet[Any]:
        items = permissions.review_items_for(self.request.user)
        return selectors.review_items_with_details(items).order_by(
            "campaign__due_on", "campaign_id", "id"
        )

    def get_object(self) -> Any:
        # 404 unless the user leads the grant or is an operator: item ids reveal nothing.
        return permissions.get_review_item_for_reviewer(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(request=s.ReviewDecisionSerializer, responses=s.ReviewItemSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str) -> Response:
        item = self.get_object()
        data = _valid(s.ReviewDecisionSerializer, request)
        item = review_service.decide(
            item, actor=request.user, decision=data["decision"], comment=data["comment"]
        )
        return Response(
            s.ReviewItemSerializer(
                selectors.review_items_with_details(type(item).objects.filter(pk=item.pk)).get()
            ).data
        )


# --- personal API tokens ----------------------------------------------------------------------


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """My personal API tokens (operators see everyone's); DELETE revokes one."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.ApiTokenSerializer
    filterset_fields = ["name"]

    def get_queryset(self) -> QuerySet[Any]:
        return permissions.api_tokens_visible_to(self.request.user).order_by("-created_at", "-id")

    def get_object(self) -> Any:
        return permissions.get_api_token_for_owner(self.request.user, int(self.kwargs["pk"]))

    @extend_schema(
        request=s.ApiTokenCreateSerializer,
        responses={201: s.NewApiTokenSerializer},
        description=(
            "A new token for me; its secret is in this answer and never again. Asked with an "
            "API token, the new one ends no later than that token (see `expires_at`)."
        ),
    )
    def create(self, request: Request) -> Response:
        data = _valid(s.ApiTokenCreateSerializer, request)
        token, secret = tokens.create_api_token(
            owner=request.user,
            name=data["name"],
            days=data["days"],
            actor=request.user,
            made_with=request.auth if isinstance(request.auth, ApiToken) else None,
        )
        body = s.ApiTokenSerializer(token).data
        return Response({**body, "token": secret}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Any) -> None:
        tokens.revoke_api_token(instance, actor=self.request.user)
