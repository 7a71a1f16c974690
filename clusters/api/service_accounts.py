"""Managed service accounts over the REST API: the same services and checks as their pages.

An account is visible to operators and to members of its owner team (404 for anyone else);
declaring or changing one goes through `check_may_declare` (a team member, for their team, with
self-service roles only). A new token is shown once, to whoever asks first (`reveal`).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from access.api.fields import HumanDurationField, NameField, NameListField, StringMapField
from access.api.serializers import OptionalReasonSerializer, ReasonSerializer
from access.models import Role, Team
from clusters import permissions, serviceaccounts
from clusters.choices import DeliveryKind
from clusters.models import Cluster, DeliveryTarget, ManagedServiceAccount, TokenGeneration


class DeliveryTargetSerializer(serializers.ModelSerializer):
    cluster = NameField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = DeliveryTarget
        fields = [
            "id",
            "kind",
            "cluster",
            "namespace",
            "secret_name",
            "url",
            "last_generation",
            "last_delivered_at",
            "last_error",
            "created_at",
        ]
        read_only_fields = fields


class DeliveryTargetCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DeliveryKind.choices)
    cluster = NameField(
        slug_field="name", queryset=Cluster.objects.all(), required=False, allow_null=True
    )
    namespace = serializers.CharField(max_length=63, required=False, default="", allow_blank=True)
    secret_name = serializers.CharField(
        max_length=253, required=False, default="", allow_blank=True
    )
    url = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    ca_bundle = serializers.CharField(required=False, default="", allow_blank=True)
    signing_key = serializers.CharField(
        write_only=True, required=False, default="", allow_blank=True, max_length=500
    )


class TokenGenerationSerializer(serializers.ModelSerializer):
    """A generation's facts; its tokens are never part of it."""

    class Meta:
        model = TokenGeneration
        fields = [
            "number",
            "state",
            "trigger",
            "created_at",
            "activated_at",
            "grace_until",
            "revoked_at",
            "expires_at",
            "reveal_pending",
            "revealed_at",
        ]
        read_only_fields = fields


class ServiceAccountSerializer(serializers.ModelSerializer):
    owner_team = NameField(slug_field="name", queryset=Team.objects.filter(is_active=True))
    roles = NameField(slug_field="name", queryset=Role.objects.all(), many=True, required=False)
    namespaces = NameListField(required=False)
    clusters = NameListField(required=False)
    cluster_selector = StringMapField(required=False)
    rotation_period = HumanDurationField(required=False)
    grace_period = HumanDurationField(required=False)
    token_lifetime = HumanDurationField(required=False)
    reason = serializers.CharField(write_only=True, required=False, default="", allow_blank=True)
    targets = DeliveryTargetSerializer(many=True, read_only=True)

    class Meta:
        model = ManagedServiceAccount
        fields = [
            "id",
            *ManagedServiceAccount.DECLARED,
            "state",
            "next_rotation_at",
            "last_rotated_at",
            "consecutive_failures",
            "last_error",
            "created_at",
            "retired_at",
            "targets",
            "pending_change",
            "approval_requests",
            "reason",
        ]
        read_only_fields = [
            "state",
            "pending_change",
            "approval_requests",
            "next_rotation_at",
            "last_rotated_at",
            "consecutive_failures",
            "last_error",
            "created_at",
            "retired_at",
        ]
        validators: list[Any] = []


class RevealedSerializer(serializers.Serializer):
    kubeconfig = serializers.CharField(help_text="shown this once; Warden keeps no copy")


def account_input(data: dict[str, Any], current: ManagedServiceAccount | None = None) -> Any:
    """The service's input from the API's fields (PATCH: what is not sent stays)."""
    defaults = serviceaccounts.AccountInput(name="", namespace="", owner_team=None)  # type: ignore[arg-type]
    if current is not None:
        base: dict[str, Any] = {
            "name": current.name,
            "namespace": current.namespace,
            "description": current.description,
            "owner_team": current.owner_team,
            "roles": list(current.roles.all()),
            "namespaces": list(current.namespaces or []),
            "clusters": list(current.clusters or []),
            "cluster_selector": dict(current.cluster_selector or {}),
            "rotation_period": current.rotation_period,
            "grace_period": current.grace_period,
            "token_lifetime": current.token_lifetime,
            "show_to_owner": current.show_to_owner,
        }
    else:
        base = {
            "rotation_period": defaults.rotation_period,
            "grace_period": defaults.grace_period,
            "token_lifetime": defaults.token_lifetime,
            "description": "",
            "roles": [],
            "namespaces": [],
            "clusters": [],
            "cluster_selector": {},
            "show_to_owner": True,
        }
    base.update({k: v for k, v in data.items() if k != "reason"})
    base["roles"] = list(base["roles"])
    return serviceaccounts.AccountInput(**base)


class ServiceAccountViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Service accounts machines use, with rotated tokens (operators, and owner teams)."""

    lookup_value_regex = r"[0-9]+"
    serializer_class = ServiceAccountSerializer
    filterset_fields = ["state", "namespace"]

    def get_queryset(self) -> QuerySet[ManagedServiceAccount]:
        return (
            permissions.accounts_visible_to(self.request.user)
            .prefetch_related("roles", "targets__cluster")
            .order_by("namespace", "name", "id")
        )

    def get_object(self) -> ManagedServiceAccount:
        return permissions.get_account_for_user(self.request.user, int(self.kwargs["pk"]))

    def _answer(self, account: ManagedServiceAccount, code: int = 200) -> Response:
        fresh = self.get_queryset().filter(pk=account.pk).first() or account
        return Response(ServiceAccountSerializer(fresh).data, status=code)

    @extend_schema(request=ServiceAccountSerializer, responses={201: ServiceAccountSerializer})
    def create(self, request: Request) -> Response:
        form = ServiceAccountSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = account_input(dict(form.validated_data))
        permissions.check_may_declare(request.user, data.owner_team, data.roles)
        account = serviceaccounts.declare_service_account(
            data, actor=request.user, reason=form.validated_data.get("reason", "")
        )
        return self._answer(account, status.HTTP_201_CREATED)

    @extend_schema(request=ServiceAccountSerializer, responses=ServiceAccountSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        account = self.get_object()
        form = ServiceAccountSerializer(account, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        data = account_input(dict(form.validated_data), current=account)
        permissions.check_may_declare(request.user, account.owner_team, account.roles.all())
        permissions.check_may_declare(request.user, data.owner_team, data.roles)
        serviceaccounts.declare_service_account(
            data,
            actor=request.user,
            account=account,
            reason=form.validated_data.get("reason", ""),
        )
        return self._answer(account)

    @extend_schema(request=OptionalReasonSerializer, responses={202: ServiceAccountSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str) -> Response:
        """Ask for a new token generation now; the current one stays valid through its grace."""
        account = self.get_object()
        form = OptionalReasonSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        serviceaccounts.request_rotation(
            account, actor=request.user, reason=form.validated_data["reason"]
        )
        return self._answer(account, status.HTTP_202_ACCEPTED)

    @extend_schema(request=ReasonSerializer, responses=ServiceAccountSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str) -> Response:
        """Retire: its tokens are revoked and it leaves every cluster."""
        account = self.get_object()
        form = ReasonSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        serviceaccounts.retire_service_account(
            account, actor=request.user, reason=form.validated_data["reason"]
        )
        return self._answer(account)

    @extend_schema(responses=TokenGenerationSerializer(many=True))
    @action(detail=True, methods=["get"])
    def generations(self, request: Request, pk: str) -> Response:
        account = self.get_object()
        page = self.paginate_queryset(account.generations.order_by("-number"))
        return self.get_paginated_response(TokenGenerationSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: RevealedSerializer, 410: RevealedSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path=r"generations/(?P<number>[0-9]+)/reveal",
    )
    def reveal(self, request: Request, pk: str, number: str) -> Response:
        """The generation's kubeconfig, once: the first caller gets it, then it is gone."""
        account = self.get_object()
        generation = permissions.get_generation_to_reveal(request.user, account, int(number))
        try:
            kubeconfig = serviceaccounts.reveal(generation.pk, actor=request.user)
        except serviceaccounts.AlreadyShown as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_410_GONE)
        response = Response({"kubeconfig": kubeconfig})
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        request=DeliveryTargetCreateSerializer, responses={201: DeliveryTargetSerializer}
    )
    @action(detail=True, methods=["post"])
    def targets(self, request: Request, pk: str) -> Response:
        """Add where new tokens go (a Secret on a cluster, or a webhook)."""
        account = self.get_object()
        form = DeliveryTargetCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        target = serviceaccounts.add_delivery_target(
            account, actor=request.user, **form.validated_data
        )
        return Response(DeliveryTargetSerializer(target).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"targets/(?P<target_id>[0-9]+)")
    def remove_target(self, request: Request, pk: str, target_id: str) -> Response:
        account = self.get_object()
        target = get_object_or_404(DeliveryTarget, pk=int(target_id), account=account)
        serviceaccounts.remove_delivery_target(target, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
