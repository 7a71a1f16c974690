"""People and teams mirrored from the directory, and the record of each directory sync."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from access.choices import (
    CampaignState,
    Decision,
    Environment,
    GrantSource,
    InactiveReason,
    RequestState,
    ReviewDecision,
    RoleScope,
    SyncStatus,
    SyncTrigger,
    Tier,
)
from core.models import Run


class Person(models.Model):
    """Someone from the company directory; the subject of access."""

    # Normalised (lower-case, canonical spacing) DN; member references are matched on it. A DN
    # can come back as a new entry (a rehire): it is unique among active people only.
    dn = models.CharField(max_length=1024)
    # entryUUID (OpenLDAP) or objectGUID (AD): survives renames and moves between OUs.
    external_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: unknown, not unique
    # Unique among active people only: a rehire or a new hire may reuse a leaver's username.
    username = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    inactive_reason = models.CharField(max_length=16, choices=InactiveReason.choices, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    # Digest of the mirrored attributes: an unchanged entry costs no write.
    entry_hash = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="person",
    )
    # Mirrored from the directory's manager attribute: the person's lead for access purposes
    # (reviews their standing access). Only an active person; unset when the DN is unknown.
    manager = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reports",
    )

    class Meta:
        ordering = ["username"]
        constraints = [
            models.UniqueConstraint(
                fields=["username"],
                condition=models.Q(is_active=True),
                name="person_active_username_unique",
            ),
            models.UniqueConstraint(
                fields=["dn"], condition=models.Q(is_active=True), name="person_active_dn_unique"
            ),
            models.UniqueConstraint(fields=["external_id"], name="person_external_id_unique"),
        ]
        # Declared here rather than with db_index/unique on the fields: PostgreSQL would add a
        # second, LIKE-pattern index to each, which nothing uses and every sync insert pays for.
        indexes = [
            models.Index(fields=["dn"], name="person_dn"),
            models.Index(fields=["username"], name="person_username"),
            # "Who left since the last reconcile?" is one index range scan.
            models.Index(fields=["is_active", "deactivated_at"], name="person_active_deactivated"),
        ]

    def __str__(self) -> str:
        return self.username


class Team(models.Model):
    """A directory group; its effective members include those of nested groups."""

    dn = models.CharField(max_length=1024)
    external_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: unknown, not unique
    # The group's name (cn) as Kubernetes sees it in a group subject.
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    entry_hash = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    members = models.ManyToManyField(Person, through="Membership", related_name="teams")
    subteams = models.ManyToManyField(
        "self", through="TeamNesting", symmetrical=False, related_name="parent_teams"
    )
    # Mirrored from the group's owner attribute (managedBy on AD): the team's leads.
    owners = models.ManyToManyField(Person, through="TeamOwner", related_name="owned_teams")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["dn"], name="team_dn_unique"),
            models.UniqueConstraint(fields=["external_id"], name="team_external_id_unique"),
        ]
        indexes = [models.Index(fields=["name"], name="team_name")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A person is in a team, directly or through nested groups (`is_direct` tells which)."""

    # The composite unique constraint and index below serve both foreign keys.
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    person = models.ForeignKey(
        Person, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    is_direct = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "person"], name="membership_unique"),
        ]
        indexes = [models.Index(fields=["person", "team"], name="membership_person")]

    def __str__(self) -> str:
        return f"{self.person} in {self.team}"


class TeamOwner(models.Model):
    """A person the directory names as an owner of a group: one of the team's leads."""

    # The composite unique constraint serves lookups by team; the index those by person.
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="ownerships", db_index=False
    )
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="ownerships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "person"], name="team_owner_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.person} owns {self.team}"


class TeamNesting(models.Model):
    """A group listed as a member of another group."""

    parent = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="child_links")
    child = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="parent_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["parent", "child"], name="team_nesting_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.child} in {self.parent}"


class DirectorySync(Run):
    """One run of the directory sync: what it read and changed, or why it changed nothing."""

    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices)
    started_at = models.DateTimeField(auto_now_add=True)
    people_seen = models.PositiveIntegerField(default=0)
    teams_seen = models.PositiveIntegerField(default=0)
    people_created = models.PositiveIntegerField(default=0)
    people_updated = models.PositiveIntegerField(default=0)
    people_deactivated = models.PositiveIntegerField(default=0)
    people_reactivated = models.PositiveIntegerField(default=0)
    teams_created = models.PositiveIntegerField(default=0)
    teams_updated = models.PositiveIntegerField(default=0)
    teams_deactivated = models.PositiveIntegerField(default=0)
    memberships_added = models.PositiveIntegerField(default=0)
    memberships_removed = models.PositiveIntegerField(default=0)
    # Managers and team owners set, changed or cleared.
    leads_changed = models.PositiveIntegerField(default=0)
    # Directory continuation references (other naming contexts) that were not followed.
    references_skipped = models.PositiveIntegerField(default=0)
    # Entries that were read but could not be mirrored (e.g. a username used twice).
    warnings = models.JSONField(default=list, blank=True)
    # What the guard saw: counts before and what would go, and a sample of who.
    guard = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    confirms = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="confirmations"
    )
    # The clusters whose reconcile this sync queued (people left, teams or members changed).
    reconcile_cluster_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["status", "-started_at"], name="directorysync_status")]

    def __str__(self) -> str:
        return f"sync #{self.pk} {self.status}"

    @property
    def changed_anything(self) -> bool:
        return any(
            (
                self.people_created,
                self.people_updated,
                self.people_deactivated,
                self.people_reactivated,
                self.teams_created,
                self.teams_updated,
                self.teams_deactivated,
                self.memberships_added,
                self.memberships_removed,
                self.leads_changed,
            )
        )


class SyncLock(models.Model):
    """A single row that a running sync holds locked, so two syncs never run at once."""

    name = models.CharField(max_length=32, unique=True)

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    """A named access level (viewer, developer, operator, admin) offered across the fleet."""

    # Used in Kubernetes object names (warden-<name>): a DNS label.
    name = models.SlugField(max_length=40, unique=True)
    display_name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # Smaller is less access: "the smallest role that allows it" is the lowest rank.
    rank = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["rank", "name"]

    def __str__(self) -> str:
        return self.name


class RoleDefinition(models.Model):
    """What a role becomes in Kubernetes where environment and tier match (blank = any)."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="definitions")
    environment = models.CharField(max_length=16, choices=Environment.choices, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, blank=True)
    # A built-in ClusterRole (view, edit, admin, cluster-admin); blank = Warden's own rules.
    cluster_role = models.CharField(max_length=253, blank=True)
    rules = models.JSONField(default=list, blank=True)
    scope = models.CharField(max_length=16, choices=RoleScope.choices, default=RoleScope.NAMESPACES)
    # Namespace names or patterns (team-*) the role is limited to; empty = any.
    namespaces = models.JSONField(default=list, blank=True)
    # False: the role does not exist here (e.g. admin in prod).
    allowed = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["role", "environment", "tier"], name="roledefinition_unique"
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.environment or 'any environment'}, {self.tier or 'any tier'}"
        return f"{self.role.name} in {where}"


class GrantQuerySet(models.QuerySet["Grant"]):
    def in_force(self, now: datetime) -> GrantQuerySet:
        return self.filter(
            Q(revoked_at__isnull=True),
            Q(starts_at__isnull=True) | Q(starts_at__lte=now),
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        )


class Grant(models.Model):
    """A team or person holds a role over a scope, from a standing policy or a request."""

    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.CASCADE, related_name="grants"
    )
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="grants")
    # Scope: each list empty = any. SCOPE names these fields, for the lists built on them.
    SCOPE = ("environments", "tiers", "clusters", "cluster_selector", "namespaces")
    environments = models.JSONField(default=list, blank=True)
    tiers = models.JSONField(default=list, blank=True)
    clusters = models.JSONField(default=list, blank=True)
    cluster_selector = models.JSONField(default=dict, blank=True)
    namespaces = models.JSONField(default=list, blank=True)
    source = models.CharField(
        max_length=16, choices=GrantSource.choices, default=GrantSource.STANDING
    )
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    # The environment/tier pairs ("prod/tier-0") the approval behind it covered; the grant never
    # extends to a cluster elsewhere (it shows there as pending). None: not limited (standing).
    covers = models.JSONField(null=True, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(team__isnull=False) & Q(person__isnull=True))
                | (Q(team__isnull=True) & Q(person__isnull=False)),
                name="grant_one_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"grant #{self.pk}: {self.role.name} to {self.team or self.person}"


class AuditChain(models.Model):
    """The head of the audit chain: a row each writer locks, naming the newest event."""

    name = models.CharField(max_length=32, unique=True)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seq}"


class AuditEvent(models.Model):
    """An append-only, hash-chained record of a change of access: who, what, when and why."""

    # Position in the chain; each event's hash covers its fields and the previous event's hash.
    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    # No database constraint and no cascade: deleting an account must never rewrite the trail.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # Kept as written: the account may be renamed or deleted later. "system" for Warden itself.
    actor_name = models.CharField(max_length=255)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # The web request or Celery task that made the change (X-Request-ID / task id).
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)
    # Which WARDEN_AUDIT_KEYS key signed `hash` (an HMAC); empty for events written before the
    # key (plain SHA-256), which verify only as the unbroken start of the chain.
    # The database default lets the release before, still running in a rolling upgrade, insert.
    key_id = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["action", "-seq"], name="audit_action"),
            models.Index(fields=["object_type", "object_id", "-seq"], name="audit_object"),
            models.Index(fields=["actor_name", "-seq"], name="audit_actor"),
            models.Index(fields=["created_at"], name="audit_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class ApprovalPolicy(models.Model):
    """Who must approve access where: per environment and tier (and optionally one role).

    Where several policies match a cluster, the most specific one governs (role, then
    environment, then tier); a request that reaches several clusters follows the strictest.
    """

    name = models.CharField(max_length=100)
    environment = models.CharField(max_length=16, choices=Environment.choices, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, blank=True)
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.CASCADE, related_name="policies"
    )
    # 0 = granted at once (auto-approve), e.g. viewer on dev.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # Members of these teams approve; none = Warden operators approve.
    approver_teams = models.ManyToManyField(Team, blank=True, related_name="approves_for")
    # The requester's manager (from the directory) may approve too.
    manager_may_approve = models.BooleanField(default=False)
    self_approval_forbidden = models.BooleanField(default=True)
    max_duration = models.DurationField()
    default_duration = models.DurationField()
    # The requester may extend access this policy granted in one click, without approval, as
    # long as it lasts no longer in all than max_duration (what an approver could have given).
    self_extension = models.BooleanField(default=False)
    # Immediate, short access in an emergency; loudly audited and reviewed afterwards. Off
    # unless turned on here, and then only for members of these teams, for these roles.
    break_glass_allowed = models.BooleanField(default=False)
    break_glass_duration = models.DurationField(null=True, blank=True)
    break_glass_teams = models.ManyToManyField(Team, blank=True, related_name="may_break_glass")
    break_glass_roles = models.ManyToManyField(
        Role, blank=True, related_name="break_glass_policies"
    )

    # What a person sets on a policy, in the order the admin, the API, the policy pages and
    # access as code show it; the TEAM_FIELDS and ROLE_FIELDS among them are many-to-many.
    SETTINGS = (
        "name",
        "environment",
        "tier",
        "role",
        "approvals_required",
        "approver_teams",
        "manager_may_approve",
        "self_approval_forbidden",
        "max_duration",
        "default_duration",
        "self_extension",
        "break_glass_allowed",
        "break_glass_duration",
        "break_glass_teams",
        "break_glass_roles",
    )
    TEAM_FIELDS = ("approver_teams", "break_glass_teams")
    ROLE_FIELDS = ("break_glass_roles",)

    class Meta:
        ordering = ["environment", "tier", "name"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "tier", "role"],
                name="approvalpolicy_unique",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def specificity(self) -> int:
        return (4 if self.role_id else 0) + (2 if self.environment else 0) + (1 if self.tier else 0)

    def matches(self, environment: str, tier: str, role_id: int) -> bool:
        return (
            (not self.environment or self.environment == environment)
            and (not self.tier or self.tier == tier)
            and (not self.role_id or self.role_id == role_id)
        )


class AccessRequestQuerySet(models.QuerySet["AccessRequest"]):
    def pending(self) -> AccessRequestQuerySet:
        return self.filter(state=RequestState.PENDING)


class AccessRequest(models.Model):
    """A person asks for a role over a scope for a while, with a reason; approvers decide."""

    requester = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="requests")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="requests")
    # Scope, as on a grant; empty = any.
    environments = models.JSONField(default=list, blank=True)
    tiers = models.JSONField(default=list, blank=True)
    clusters = models.JSONField(default=list, blank=True)
    namespaces = models.JSONField(default=list, blank=True)
    duration = models.DurationField()
    justification = models.TextField()
    ticket = models.CharField(max_length=100, blank=True)
    break_glass = models.BooleanField(default=False)
    # Set when the access is asked for a managed service account ("namespace/name") the
    # requester declared: approved, it changes that account; no grant is made for the requester.
    for_service_account = models.CharField(max_length=120, blank=True)
    # The environment/tier pairs ("prod/tier-0") its scope can ever reach where the role exists:
    # the policies of all of them decided who approves; the grant covers exactly these.
    covers = models.JSONField(default=list, blank=True)
    state = models.CharField(
        max_length=16, choices=RequestState.choices, default=RequestState.PENDING
    )
    # The governing policy, and what it asked for when the request was made.
    policy = models.ForeignKey(
        ApprovalPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approver_teams = models.ManyToManyField(Team, blank=True, related_name="+")
    manager_may_approve = models.BooleanField(default=False)
    self_approval_forbidden = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    grant = models.OneToOneField(
        Grant, null=True, blank=True, on_delete=models.SET_NULL, related_name="request"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The request this one extends (made from a reminder's "extend").
    extends = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="extensions"
    )
    reminded_at = models.DateTimeField(null=True, blank=True)
    # Break-glass access is reviewed after the fact.
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_comment = models.TextField(blank=True)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "-created_at"], name="request_state_time"),
            models.Index(fields=["requester", "state", "-created_at"], name="request_requester"),
            models.Index(fields=["state", "expires_at"], name="request_state_expiry"),
        ]

    def __str__(self) -> str:
        return f"request #{self.pk}: {self.role.name} for {self.requester.username}"

    @property
    def is_open(self) -> bool:
        return self.state == RequestState.PENDING

    @property
    def where(self) -> str:
        """The clusters asked for, in words: names, or environments and tiers."""
        named = ", ".join(self.clusters)
        grouped = " / ".join(p for p in (", ".join(self.environments), ", ".join(self.tiers)) if p)
        return named or grouped or "every cluster"

    @property
    def scope_text(self) -> str:
        return self.where + (f" in {', '.join(self.namespaces)}" if self.namespaces else "")


class Approval(models.Model):
    """One approver's decision on a request, with what they narrowed."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    # What this approver changed of the scope or duration: field -> [before, after].
    narrowed = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="approval_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display().lower()} of request #{self.request_id}"


class ReviewCampaign(models.Model):
    """A periodic access review: leads confirm or revoke the standing access of their people."""

    name = models.CharField(max_length=200)
    # Items still unreviewed after this day are overdue: flagged and reminded daily.
    due_on = models.DateField()
    # Scope: grants that reach these environments (a grant limited to none reaches all);
    # empty = every standing grant.
    environments = models.JSONField(default=list, blank=True)
    # Grants from approved requests expire on their own and are out of scope, unless the
    # operator includes those at least this many days old.
    request_grants_older_than_days = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=CampaignState.choices, default=CampaignState.OPEN
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    # The day the last overdue reminder went out: the daily task claims a day exactly once.
    reminded_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["state", "due_on"], name="reviewcampaign_state_due")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.state == CampaignState.OPEN


class ReviewItem(models.Model):
    """One grant in force that a campaign asks its reviewer to keep or revoke."""

    campaign = models.ForeignKey(ReviewCampaign, on_delete=models.CASCADE, related_name="items")
    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="review_items")
    decision = models.CharField(
        max_length=16, choices=ReviewDecision.choices, default=ReviewDecision.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["campaign_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "grant"], name="reviewitem_unique"),
        ]
        indexes = [models.Index(fields=["campaign", "decision"], name="reviewitem_decision")]

    def __str__(self) -> str:
        return f"review of grant #{self.grant_id} in {self.campaign_id}"


class ApiToken(models.Model):
    """A personal API token: automation and the `warden` command line act as its owner with it.

    The token is shown once when it is made; Warden keeps only its SHA-256 digest (the secret is
    32 random bytes, so a fast digest is as good as a slow one) and a public key id to find it.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # Public part of the token (wdn_<key_id>_<secret>): finds the row, shown to tell tokens apart.
    key_id = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Written at most once a minute per token, so a busy script costs no write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="apitoken_owner")]

    def __str__(self) -> str:
        return f"{self.name} (wdn_{self.key_id}_…)"

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now
