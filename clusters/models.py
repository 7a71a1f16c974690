"""The cluster fleet, the record of each reconcile, and the service accounts machines use."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from access.choices import Environment, Tier
from access.models import Role, Team
from access.specs import ClusterSpec
from clusters.choices import (
    AccountState,
    ClusterState,
    DeliveryKind,
    DiscoveryKind,
    DiscoveryStatus,
    DiscoveryTrigger,
    GenerationState,
    LegacyTokenState,
    ReconcileStatus,
    ReconcileTrigger,
    RotationStatus,
    RotationTrigger,
)
from clusters.compiler import ServiceAccountSpec
from clusters.crypto import EncryptedTextField
from core.models import Run

dns_label = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "Use lower-case letters, digits and '-', starting and ending with a letter or digit "
    "(a Kubernetes DNS label).",
)


class Cluster(models.Model):
    """A Kubernetes cluster whose RBAC Warden keeps equal to the declared grants."""

    name = models.SlugField(max_length=63, unique=True)
    environment = models.CharField(max_length=16, choices=Environment.choices)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    labels = models.JSONField(default=dict, blank=True)
    api_url = models.URLField(max_length=500)
    # PEM CA bundle for the API server; blank = the system trust store.
    ca_bundle = models.TextField(blank=True)
    # What the cluster is, whatever URL reaches it: the uid of its kube-system namespace, read
    # at registration (or at the first reconcile of a cluster registered before it was kept).
    # Two live registrations of one cluster are refused ("" until known).
    identity = models.CharField(max_length=64, blank=True, default="")
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

    # What the compiler knows of a cluster (spec()), and what access as code declares of it;
    # never its URL, CA or token.
    SPEC = ("name", "environment", "tier", "labels", "user_prefix", "group_prefix", "bind_groups")

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


class ReconcileRun(Run):
    """One reconcile of one cluster: what it found, wrote and cost."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="reconciles")
    trigger = models.CharField(max_length=16, choices=ReconcileTrigger.choices)
    status = models.CharField(
        max_length=16, choices=ReconcileStatus.choices, default=ReconcileStatus.RUNNING
    )
    dry_run = models.BooleanField(default=False)
    # When the run began (the row is written when it ends): runs of one cluster never overlap.
    started_at = models.DateTimeField(default=timezone.now)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    recreated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    # Managed objects found changed or removed by someone else since the last run.
    drift = models.PositiveIntegerField(default=0)
    # Names Warden wants that an object it does not own holds ("RoleBinding ns/name"): left
    # alone, for a person to resolve; neither drift nor a failure.
    conflicts = models.JSONField(default=list, blank=True)
    api_calls = models.PositiveIntegerField(default=0)
    # grant id -> reasons it is not (fully) in force on this cluster
    pending = models.JSONField(default=dict, blank=True)
    # grant ids in force on this cluster after the run
    grants_in_force = models.JSONField(default=list, blank=True)
    # digest of each object Warden meant the cluster to hold: tells drift from intent changes
    desired_digests = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["cluster", "-started_at"], name="reconcile_cluster_time")]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} {self.cluster_id} {self.status}"


class FleetReconcile(models.Model):
    """One reconcile of the whole fleet: which clusters it asked for and from when.

    How it goes is read from each cluster's ReconcileRun since then, so this row is written once
    and nothing has to count as runs finish.
    """

    trigger = models.CharField(max_length=16, choices=ReconcileTrigger.choices)
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The live clusters at the moment of asking.
    cluster_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["-requested_at"], name="fleetreconcile_time")]

    def __str__(self) -> str:
        return f"fleet reconcile #{self.pk} {self.trigger}"


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


class DiscoveryRun(Run):
    """One pass over a discovery source: what it found, registered, retired and failed on."""

    source = models.ForeignKey(DiscoverySource, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=DiscoveryTrigger.choices)
    status = models.CharField(
        max_length=16, choices=DiscoveryStatus.choices, default=DiscoveryStatus.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
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
    # Why the source itself could not be read (status failed): `error`.

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source", "-started_at"], name="discovery_source_time")]

    def __str__(self) -> str:
        return f"discovery #{self.pk} {self.source_id} {self.status}"


class ManagedServiceAccount(models.Model):
    """A ServiceAccount machines use, kept on its clusters by Warden, with rotated tokens."""

    name = models.CharField(max_length=48, validators=[dns_label])
    namespace = models.CharField(max_length=63, validators=[dns_label])
    description = models.TextField(blank=True)
    owner_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="service_accounts")
    # Bindings come from the role catalogue, as for people.
    roles = models.ManyToManyField(Role, blank=True, related_name="service_accounts")
    # Where the roles apply (names or patterns); empty = its own namespace (cluster-wide roles:
    # the whole cluster).
    namespaces = models.JSONField(default=list, blank=True)
    # The clusters it lives on: these names, and/or those whose labels match the selector.
    clusters = models.JSONField(default=list, blank=True)
    cluster_selector = models.JSONField(default=dict, blank=True)
    rotation_period = models.DurationField(default=timedelta(days=30))
    # How long the previous token stays valid after a new one is delivered.
    grace_period = models.DurationField(default=timedelta(days=2))
    # The expirationSeconds Warden asks for: at least rotation period + grace period.
    token_lifetime = models.DurationField(default=timedelta(days=35))
    # Show each new token once to the owner team as a ready kubeconfig.
    show_to_owner = models.BooleanField(default=True)
    state = models.CharField(
        max_length=16, choices=AccountState.choices, default=AccountState.ACTIVE
    )
    next_rotation_at = models.DateTimeField(null=True, blank=True)
    rotation_requested_at = models.DateTimeField(null=True, blank=True)
    rotation_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_rotated_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The rotation lease: whoever set lease_id holds the account until lease_until. Claimed
    # with a conditional UPDATE, so a worker that dies simply lets it expire.
    lease_id = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Took over a ServiceAccount that existed before (legacy-token migration).
    adopted = models.BooleanField(default=False)
    # role name -> the environment/tier pairs ("prod/tier-0") its approval covered; the role is
    # bound nowhere else. None: not limited (declared by Warden itself or before approvals).
    approved_covers = models.JSONField(null=True, blank=True)
    # A change waiting for approval (the declaration as it would become), and the access
    # requests that decide it (one per role whose reach it widens).
    pending_change = models.JSONField(null=True, blank=True)
    approval_requests = models.ManyToManyField("access.AccessRequest", blank=True, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    # What its owners declare, in the order the API and access as code show it.
    DECLARED = (
        "name",
        "namespace",
        "description",
        "owner_team",
        "roles",
        "namespaces",
        "clusters",
        "cluster_selector",
        "rotation_period",
        "grace_period",
        "token_lifetime",
        "show_to_owner",
    )

    class Meta:
        ordering = ["namespace", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "name"],
                condition=Q(state__in=("active", "pending")),
                name="msa_active_name_unique",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_rotation_at"], name="msa_due")]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def spec(self, role_names: tuple[str, ...] | None = None) -> ServiceAccountSpec:
        if role_names is None:
            role_names = tuple(sorted(role.name for role in self.roles.all()))
        return ServiceAccountSpec(
            id=self.pk,
            name=self.name,
            namespace=self.namespace,
            roles=role_names,
            namespaces=tuple(self.namespaces or ()),
            clusters=tuple(self.clusters or ()),
            selector=tuple(sorted((self.cluster_selector or {}).items())),
            owner_team=self.owner_team.name if self.owner_team_id else "",
            covers=(
                None
                if self.approved_covers is None
                else tuple(
                    sorted((role, tuple(pairs)) for role, pairs in self.approved_covers.items())
                )
            ),
        )


class TokenGeneration(models.Model):
    """One generation of an account's tokens: a token per cluster, issued, delivered, revoked.

    Each token is bound to a Secret Warden creates for the generation on that cluster, so
    deleting that Secret revokes it. Token values are kept (encrypted) only as long as Warden
    still has to hand them over: until delivered and, if asked, shown once.
    """

    account = models.ForeignKey(
        ManagedServiceAccount, on_delete=models.CASCADE, related_name="generations"
    )
    number = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16, choices=GenerationState.choices, default=GenerationState.PENDING
    )
    trigger = models.CharField(max_length=16, choices=RotationTrigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The earliest expiry among its tokens, as the API servers answered.
    expires_at = models.DateTimeField(null=True, blank=True)
    # cluster name -> {"secret", "uid", "expires_at", "server"}; never the token itself.
    issued = models.JSONField(default=dict, blank=True)
    # cluster name -> token, encrypted as one value; emptied once nobody needs it any more.
    sealed_tokens = EncryptedTextField(blank=True)
    # ids of the delivery targets that have this generation.
    delivered = models.JSONField(default=list, blank=True)
    # cluster names where its bound Secret is deleted.
    revoked_on = models.JSONField(default=list, blank=True)
    reveal_pending = models.BooleanField(default=False)
    revealed_at = models.DateTimeField(null=True, blank=True)
    revealed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["account", "number"], name="generation_unique"),
        ]
        indexes = [models.Index(fields=["state", "grace_until"], name="generation_grace")]

    def __str__(self) -> str:
        return f"{self.account_id} generation {self.number} ({self.state})"


class DeliveryTarget(models.Model):
    """Where an account's new tokens go: a Secret on a consumer cluster, or a webhook."""

    account = models.ForeignKey(
        ManagedServiceAccount, on_delete=models.CASCADE, related_name="targets"
    )
    kind = models.CharField(max_length=16, choices=DeliveryKind.choices)
    # kind=secret: the consumer's cluster, namespace and Secret name.
    cluster = models.ForeignKey(
        Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    namespace = models.CharField(max_length=63, blank=True, validators=[dns_label])
    secret_name = models.CharField(max_length=253, blank=True)
    # kind=webhook: an HTTPS endpoint, the CA it is signed by (blank: system CAs), and the
    # key the body is signed with (HMAC-SHA256).
    url = models.URLField(max_length=500, blank=True)
    ca_bundle = models.TextField(blank=True)
    signing_key = EncryptedTextField(blank=True)
    # The resourceVersion of the Secret as Warden last wrote it: the next write is conditional
    # on it, so it costs one call and never overwrites a Secret someone else changed.
    resource_version = models.CharField(max_length=64, blank=True)
    last_generation = models.PositiveIntegerField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.kind == DeliveryKind.SECRET:
            cluster = self.cluster.name if self.cluster is not None else "?"
            return f"Secret {cluster}/{self.namespace}/{self.secret_name}"
        return f"webhook {self.url}"


class RotationRun(Run):
    """One rotation attempt of one account: what it did, what it cost, and why it failed."""

    account = models.ForeignKey(
        ManagedServiceAccount, on_delete=models.CASCADE, related_name="rotations"
    )
    generation = models.ForeignKey(
        TokenGeneration, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    trigger = models.CharField(max_length=16, choices=RotationTrigger.choices)
    status = models.CharField(max_length=16, choices=RotationStatus.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()  # written once the attempt ends
    duration_s = models.FloatField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    steps = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["account", "-started_at"], name="rotation_account_time")]

    def __str__(self) -> str:
        return f"rotation #{self.pk} of {self.account_id} {self.status}"


class LegacyToken(models.Model):
    """A long-lived `kubernetes.io/service-account-token` Secret found on a cluster (reported)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="legacy_tokens")
    namespace = models.CharField(max_length=63)
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64)
    service_account = models.CharField(max_length=253, blank=True)
    # creationTimestamp of the Secret: the token is as old as that, and never expires.
    created_in_cluster = models.DateTimeField(null=True, blank=True)
    # kubernetes.io/legacy-token-last-used (Kubernetes >= 1.29 tracks it), if present.
    last_used = models.CharField(max_length=32, blank=True)
    # Who owns it, as far as the cluster says (managed-by / owner / team labels).
    owner = models.CharField(max_length=255, blank=True)
    state = models.CharField(
        max_length=16, choices=LegacyTokenState.choices, default=LegacyTokenState.FOUND
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    migrated_to = models.ForeignKey(
        ManagedServiceAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["cluster__name", "namespace", "name"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "uid"], name="legacytoken_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.cluster_id}:{self.namespace}/{self.name}"
