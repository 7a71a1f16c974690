"""The cluster fleet over the REST API (operators): the same services and checks as the pages."""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from access.api.serializers import QueuedSerializer
from access.choices import Environment, Tier
from access.permissions import IsOperator
from clusters import services
from clusters.api import serializers as s
from clusters.choices import ClusterState, ReconcileStatus, ReconcileTrigger
from clusters.k8s import KubeError
from clusters.models import Cluster, ReconcileRun
from clusters.permissions import get_cluster_named_for_operator


class ClusterFilter(filters.FilterSet):
    environment = filters.ChoiceFilter(choices=Environment.choices)
    tier = filters.ChoiceFilter(choices=Tier.choices)
    state = filters.ChoiceFilter(choices=ClusterState.choices)
    q = filters.CharFilter(field_name="name", lookup_expr="icontains", label="name contains")

    class Meta:
        model = Cluster
        fields = ["environment", "tier", "state"]


class ClusterViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The fleet (operators). Clusters are named in URLs: /api/v1/clusters/<name>/."""

    serializer_class = s.ClusterSerializer
    permission_classes = [IsAuthenticated, IsOperator]
    filterset_class = ClusterFilter
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    queryset = Cluster.objects.select_related("discovered_by").order_by("name")

    def get_object(self) -> Cluster:
        return get_cluster_named_for_operator(self.request.user, self.kwargs["name"])

    @extend_schema(request=s.ClusterWriteSerializer, responses={201: s.ClusterSerializer})
    def create(self, request: Request) -> Response:
        """Register a cluster after checking Warden may manage RBAC there; nothing is saved
        when the check fails."""
        form = s.ClusterWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        cluster = services.register_cluster(
            **form.validated_data, actor=request.user, update_existing=False
        )
        return Response(s.ClusterSerializer(cluster).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ClusterUpdateSerializer, responses=s.ClusterSerializer)
    def update(self, request: Request, name: str) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=s.ClusterUpdateSerializer, responses=s.ClusterSerializer)
    def partial_update(self, request: Request, name: str) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, partial: bool) -> Response:
        cluster = self.get_object()
        form = s.ClusterUpdateSerializer(data=request.data, partial=partial, cluster=cluster)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = {
            "environment": cluster.environment,
            "tier": cluster.tier,
            "labels": cluster.labels,
            "user_prefix": cluster.user_prefix,
            "group_prefix": cluster.group_prefix,
            "bind_groups": cluster.bind_groups,
            "api_url": cluster.api_url,
            "ca_bundle": cluster.ca_bundle,
        }
        data.update(form.validated_data)
        services.update_cluster(cluster, actor=request.user, **data)
        return Response(s.ClusterSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.CheckSerializer)
    @action(detail=True, methods=["post"])
    def check(self, request: Request, name: str) -> Response:
        """Ask the cluster now whether Warden's credentials may manage RBAC there."""
        problems = services.check_connection(self.get_object())
        return Response({"ok": not problems, "problems": problems})

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "ShadowScan",
            {"found": serializers.ListField(child=serializers.DictField())},
        ),
    )
    @action(detail=True, methods=["post"], url_path="scan-shadow-access")
    def scan_shadow_access(self, request: Request, name: str) -> Response:
        """Look for bindings outside Warden that name directory people or teams, now."""
        cluster = self.get_object()
        try:
            found = services.scan_shadow_access(cluster.pk)
        except KubeError as exc:
            return Response(
                {"detail": f"{cluster.name} could not be scanned: {exc}"},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"found": found})

    @extend_schema(request=None, responses={202: QueuedSerializer})
    @action(detail=True, methods=["post"])
    def reconcile(self, request: Request, name: str) -> Response:
        cluster = self.get_object()
        services.request_reconcile(cluster, actor=request.user)
        return Response(
            {"detail": f"A reconcile of {cluster.name} has been queued."},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=s.RetireSerializer, responses=s.ClusterSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, name: str) -> Response:
        """Retire a cluster (final); its record and history are kept."""
        cluster = self.get_object()
        form = s.RetireSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if form.validated_data["confirm"].strip() != cluster.name:
            raise ValidationError(f"Send confirm={cluster.name} to retire it.")
        services.retire_cluster(
            cluster,
            remove_owned=form.validated_data["remove_owned"],
            actor=request.user,
            reason=form.validated_data["reason"],
        )
        return Response(s.ClusterSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={202: QueuedSerializer})
    @action(detail=False, methods=["post"], url_path="reconcile-fleet")
    def reconcile_fleet(self, request: Request) -> Response:
        count = services.request_fleet_reconcile(actor=request.user)
        return Response(
            {"detail": f"A reconcile of all {count} live clusters has been queued."},
            status=status.HTTP_202_ACCEPTED,
        )


class ReconcileRunFilter(filters.FilterSet):
    cluster = filters.CharFilter(field_name="cluster__name")
    status = filters.ChoiceFilter(choices=ReconcileStatus.choices)
    trigger = filters.ChoiceFilter(choices=ReconcileTrigger.choices)
    dry_run = filters.BooleanFilter()

    class Meta:
        model = ReconcileRun
        fields = ["cluster", "status", "trigger", "dry_run"]


class ReconcileRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Every reconcile of every cluster (operators), newest first."""

    lookup_value_regex = r"[0-9]+"

    serializer_class = s.ReconcileRunSerializer
    permission_classes = [IsAuthenticated, IsOperator]
    filterset_class = ReconcileRunFilter

    def get_queryset(self) -> QuerySet[ReconcileRun]:
        return ReconcileRun.objects.select_related("cluster").order_by("-started_at", "-id")
