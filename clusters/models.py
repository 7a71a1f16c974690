"""The cluster fleet and the record of each reconcile."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from access.choices import Environment, Tier
from clusters.choices import (
    ClusterState,
    DiscoveryKind,
    DiscoveryStatus,
    DiscoveryTrigger,
    ReconcileStatus,
    ReconcileTrigger,
)
from clusters.compiler import ClusterSpec
from clusters.crypto import EncryptedTextField


class Cluster(models.Model):
    """A Kubernetes cluster whose RBAC Warden keeps equal to the declared grants."""

    name = models.SlugField(max_length=63, unique=True)
    environment = models.CharField(max_length=16, choices=Environment.choices)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    labels = models.JSONField(default=dict, blank=True)
    api_url = models.URLField(max_length=500)
    # PEM CA bundle for the API server; blank = the system trust store.
    ca_bundle = models.TextField(blank=True)
    # The bearer token Warden uses there, encrypted at rest.
    token = EncryptedTextField(blank=True)
    # Prefixes the cluster's OIDC authenticator adds to usernames and groups ("oidc:").
    user_prefix = models.CharField(max_length=100, blank=True)
    group_prefix = models.CharField(max_length=100, blank=True)
    # True: bind directory groups; False: expand teams to their members as users.
    bind_groups = models.BooleanField(default=True)
    state = models.CharField(
        max_length=16, choices=ClusterState.choices, default=ClusterState.ACTIVE
    )
    last_reconcile_at = models.DateTimeField(null=True, blank=True)
    last_reconcile_status = models.CharField(
        max_length=16, choices=ReconcileStatus.choices, blank=True
    )
    last_error = models.TextField(blank=True)
    # Bindings Warden does not own that give directory people or teams access (reported only).
    shadow_access = models.JSONField(default=list, blank=True)
    shadow_scanned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Set for clusters a discovery source registered: which source, and the cluster's key there
    # ("namespace/name" of a Cluster API object, "file#context" of a kubeconfig file).
    discovered_by = models.ForeignKey(
        "DiscoverySource",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="clusters",
    )
    discovered_key = models.CharField(max_length=500, blank=True)
    # When its discovery source last failed to list it; retired once the grace period is over.
    missing_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment", "tier", "name"]
        indexes = [models.Index(fields=["state", "environment", "tier"], name="cluster_state_env")]

    def __str__(self) -> str:
        return self.name

    def spec(self) -> ClusterSpec:
        return ClusterSpec(
            name=self.name,
            environment=self.environment,
            tier=self.tier,
            labels=tuple(sorted((str(k), str(v)) for k, v in (self.labels or {}).items())),
            user_prefix=self.user_prefix,
            group_prefix=self.group_prefix,
            bind_groups=self.bind_groups,
        )


class ReconcileRun(models.Model):
    """One reconcile of one cluster: what it found, wrote and cost."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="reconciles")
    trigger = models.CharField(max_length=16, choices=ReconcileTrigger.choices)
    status = models.CharField(
        max_length=16, choices=ReconcileStatus.choices, default=ReconcileStatus.RUNNING
    )
    dry_run = models.BooleanField(default=False)
    # When the run began (the row is written when it ends): runs of one cluster never overlap.
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    recreated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    # Managed objects found changed or removed by someone else since the last run.
    drift = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    # grant id -> reasons it is not (fully) in force on this cluster
    pending = models.JSONField(default=dict, blank=True)
    # grant ids in force on this cluster after the run
    grants_in_force = models.JSONField(default=list, blank=True)
    # digest of each object Warden meant the cluster to hold: tells drift from intent changes
    desired_digests = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["cluster", "-started_at"], name="reconcile_cluster_time")]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} {self.cluster_id} {self.status}"


class DiscoverySource(models.Model):
    """A place Warden finds clusters in and registers them from: Cluster API, or a folder."""

    name = models.SlugField(max_length=63, unique=True)
    kind = models.CharField(max_length=32, choices=DiscoveryKind.choices)
    enabled = models.BooleanField(default=True)
    # Cluster API: the management cluster's API and the credentials Warden reads it with.
    api_url = models.URLField(max_length=500, blank=True)
    ca_bundle = models.TextField(blank=True)
    token = EncryptedTextField(blank=True)
    # Cluster API: the namespace holding the Cluster objects; blank = all namespaces.
    namespace = models.CharField(max_length=253, blank=True)
    # Kubeconfig directory: a folder on the worker's file system (e.g. a mounted Secret).
    path = models.CharField(max_length=1000, blank=True)
    # Ordered rules mapping a discovered cluster's labels (and name) to environment and tier:
    # [{"match": {"label": "value"}, "name": "glob", "environment": "prod", "tier": "tier-0"}]
    rules = models.JSONField(default=list, blank=True)
    # Used when no rule matches; blank = such a cluster is not registered (and the run says why).
    default_environment = models.CharField(max_length=16, choices=Environment.choices, blank=True)
    default_tier = models.CharField(max_length=16, choices=Tier.choices, blank=True)
    # Subject prefixes and binding mode given to the clusters this source registers.
    user_prefix = models.CharField(max_length=100, blank=True)
    group_prefix = models.CharField(max_length=100, blank=True)
    bind_groups = models.BooleanField(default=True)
    # How long a cluster may be missing from the source before Warden retires it.
    grace_hours = models.PositiveIntegerField(default=24)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DiscoveryRun(models.Model):
    """One pass over a discovery source: what it found, registered, retired and failed on."""

    source = models.ForeignKey(DiscoverySource, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=DiscoveryTrigger.choices)
    status = models.CharField(
        max_length=16, choices=DiscoveryStatus.choices, default=DiscoveryStatus.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    found = models.PositiveIntegerField(default=0)
    registered = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Clusters of this source it no longer lists, still inside the grace period.
    missing = models.PositiveIntegerField(default=0)
    retired = models.PositiveIntegerField(default=0)
    # [{"cluster": key, "problem": text}] per cluster that could not be registered or updated.
    problems = models.JSONField(default=list, blank=True)
    # Remarks that are not failures, e.g. a mapping rule that matched no cluster.
    notes = models.JSONField(default=list, blank=True)
    # Why the source itself could not be read (status failed).
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source", "-started_at"], name="discovery_source_time")]

    def __str__(self) -> str:
        return f"discovery #{self.pk} {self.source_id} {self.status}"
