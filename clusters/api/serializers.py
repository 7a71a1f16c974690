"""What the cluster API reads and writes. A cluster's token is write-only: never shown back."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from access.api.fields import NameListField, StringMapField
from access.choices import Environment, Tier
from clusters.choices import ReconcileStatus
from clusters.models import Cluster, ReconcileRun


class ClusterSerializer(serializers.ModelSerializer):
    labels = StringMapField(read_only=True)
    last_reconcile_status = serializers.ChoiceField(
        choices=[("", "never reconciled"), *ReconcileStatus.choices],
        read_only=True,
        allow_blank=True,
    )
    discovered_by = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = Cluster
        fields = [
            "id",
            "name",
            "environment",
            "tier",
            "labels",
            "api_url",
            "ca_bundle",
            "user_prefix",
            "group_prefix",
            "bind_groups",
            "state",
            "last_reconcile_at",
            "last_reconcile_status",
            "last_error",
            "discovered_by",
            "created_at",
            "updated_at",
            "retired_at",
        ]
        read_only_fields = fields


class ClusterWriteSerializer(serializers.Serializer):
    """Registration (every field but token optional for updates; an empty token keeps it)."""

    name = serializers.SlugField(max_length=63)
    environment = serializers.ChoiceField(choices=Environment.choices)
    tier = serializers.ChoiceField(choices=Tier.choices)
    api_url = serializers.URLField(max_length=500)
    token = serializers.CharField(
        write_only=True, max_length=20000, help_text="Warden's bearer token there; never shown"
    )
    ca_bundle = serializers.CharField(required=False, default="", allow_blank=True)
    labels = StringMapField(required=False, default=dict)
    user_prefix = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )
    group_prefix = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )
    bind_groups = serializers.BooleanField(default=True)


class ClusterUpdateSerializer(ClusterWriteSerializer):
    name = None
    token = serializers.CharField(
        write_only=True,
        max_length=20000,
        required=False,
        default="",
        allow_blank=True,
        help_text="empty: keep the current token",
    )
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)

    def __init__(self, *args: Any, cluster: Cluster | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if cluster is not None and self.partial:
            # PATCH: what is not sent stays as it is.
            for name in ("environment", "tier", "api_url"):
                self.fields[name].required = False
                self.fields[name].default = getattr(cluster, name)


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())


class RetireSerializer(serializers.Serializer):
    confirm = serializers.CharField(help_text="the cluster's name, to confirm")
    remove_owned = serializers.BooleanField(
        default=True, help_text="remove every object Warden wrote there first"
    )
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class ReconcileRunSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True)
    pending = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), read_only=True
    )
    grants_in_force = serializers.ListField(child=serializers.IntegerField(), read_only=True)

    class Meta:
        model = ReconcileRun
        fields = [
            "id",
            "cluster",
            "trigger",
            "status",
            "dry_run",
            "started_at",
            "finished_at",
            "duration_s",
            "created",
            "updated",
            "recreated",
            "deleted",
            "drift",
            "api_calls",
            "pending",
            "grants_in_force",
            "error",
        ]
        read_only_fields = fields


class ReachableClusterSerializer(serializers.Serializer):
    """A cluster a person holds access on: what a kubeconfig entry for it needs."""

    name = serializers.CharField()
    environment = serializers.CharField()
    tier = serializers.CharField()
    api_url = serializers.CharField()
    ca_bundle = serializers.CharField(allow_blank=True, help_text="PEM; empty: system CAs")
    namespaces = NameListField(help_text="where the person holds access; empty: cluster-wide")
    username = serializers.CharField(help_text="the person as the cluster sees them")
    user_exec = serializers.DictField(
        allow_null=True, help_text="WARDEN_KUBECONFIG_USER_EXEC, filled in; null: not set"
    )


# --- audit ------------------------------------------------------------------------------------
