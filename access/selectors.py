"""Read queries of the people side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from access import leads
from access.choices import (
    Decision,
    RequestState,
    ReviewDecision,
)
from access.directory import DirectoryPerson
from access.fleet import ClusterPicker, fleet
from access.models import (
    AccessRequest,
    Approval,
    DirectorySync,
    Grant,
    Membership,
    Person,
    ReviewCampaign,
    ReviewItem,
    Team,
    TeamNesting,
)
from access.services.requests import Reach, missing_namespace_notes, reach_of
from access.specs import grant_spec, role_specs


def last_sync() -> DirectorySync | None:
    return DirectorySync.objects.order_by("-started_at", "-id").first()


def last_successful_sync() -> DirectorySync | None:
    return DirectorySync.objects.filter(status="succeeded").order_by("-started_at", "-id").first()


def recent_syncs(limit: int = 20) -> QuerySet[DirectorySync]:
    return DirectorySync.objects.order_by("-started_at", "-id")[:limit]


def people_deactivated_since(since: datetime) -> QuerySet[Person]:
    """Leavers and disabled accounts since a moment: one index range scan."""
    return Person.objects.filter(is_active=False, deactivated_at__gte=since)


def person_for_entry(entry: DirectoryPerson) -> Person | None:
    """The Person a directory entry is: by its stable id, else by DN (an active one first)."""
    if entry.external_id:
        person = Person.objects.filter(external_id=entry.external_id).first()
        if person is not None:
            return person
    return Person.objects.filter(dn=entry.dn).order_by("-is_active", "-id").first()


@dataclass(frozen=True)
class TeamOfPerson:
    """A team a person is in, directly or through the nested teams named in `via`."""

    team: Team
    is_direct: bool
    via: tuple[str, ...] = ()


def teams_of(person: Person) -> list[TeamOfPerson]:
    """A person's effective teams; for a nested membership, the child teams it comes through.

    Each team carries `leads`: its active owners, as the directory names them.
    """
    memberships = list(
        Membership.objects.filter(person=person, team__is_active=True)
        .select_related("team")
        .prefetch_related(
            Prefetch(
                "team__owners",
                queryset=Person.objects.filter(is_active=True).order_by("username"),
                to_attr="leads",
            )
        )
        .order_by("team__name")
    )
    indirect = [m.team_id for m in memberships if not m.is_direct]
    mine = {m.team_id for m in memberships}
    via: dict[int, list[str]] = {}
    links = TeamNesting.objects.filter(parent_id__in=indirect, child_id__in=mine).values_list(
        "parent_id", "child__name"
    )
    for parent_id, child_name in links.order_by("child__name"):
        via.setdefault(parent_id, []).append(child_name)
    return [TeamOfPerson(m.team, m.is_direct, tuple(via.get(m.team_id, ()))) for m in memberships]


# --- access held and asked for ----------------------------------------------------------------

EXPIRING_SOON = timedelta(hours=24)


@dataclass(frozen=True)
class HeldAccess:
    """One grant a person holds, directly or through a team, and where it lands."""

    grant: Grant
    via: str
    reach: list[Reach]
    request: AccessRequest | None
    expiring_soon: bool

    @property
    def clusters(self) -> list[Reach]:
        return [r for r in self.reach if r.definition is not None]


def access_of(person: Person) -> list[HeldAccess]:
    """Every grant in force for this person, with where it applies: a constant number of queries."""
    now = timezone.now()
    teams = Membership.objects.filter(person=person, team__is_active=True).values("team_id")
    grants = (
        Grant.objects.in_force(now)
        .filter(Q(person=person) | Q(team_id__in=teams))
        .select_related("role", "team", "request")
        .order_by("role__rank", "expires_at", "pk")
    )
    clusters, roles = fleet().cluster_specs(), role_specs()
    held = []
    for grant in grants:
        request = getattr(grant, "request", None)
        if grant.team is not None:
            via = f"team {grant.team.name}"
        elif request is not None:
            via = f"request #{request.pk}"
        else:
            via = "granted to you"
        held.append(
            HeldAccess(
                grant=grant,
                via=via,
                reach=reach_of(grant.role.name, _grant_scope(grant), clusters, roles),
                request=request,
                expiring_soon=bool(grant.expires_at and grant.expires_at - now < EXPIRING_SOON),
            )
        )
    return held


def _grant_scope(grant: Grant) -> dict[str, Any]:
    return {
        "environments": grant.environments,
        "tiers": grant.tiers,
        "clusters": grant.clusters,
        "namespaces": grant.namespaces,
    }


def requests_of(person: Person, limit: int = 20) -> list[AccessRequest]:
    """A person's latest requests, newest first."""
    return list(
        AccessRequest.objects.filter(requester=person)
        .select_related("role")
        .order_by("-created_at", "-id")[:limit]
    )


@dataclass(frozen=True)
class InboxRow:
    """A pending request as an approver sees it: what it would allow where, and how far along."""

    request: AccessRequest
    reach: list[Reach]
    approvals: int
    # Namespaces it names that a cluster does not have yet (said before anyone approves).
    notes: list[str] = field(default_factory=list)

    @property
    def clusters(self) -> list[Reach]:
        return [r for r in self.reach if r.definition is not None]

    @property
    def blast_radius(self) -> str:
        clusters = self.clusters
        namespaces = {ns for r in clusters for ns in r.namespaces}
        plural = "s" if len(clusters) != 1 else ""
        if namespaces:
            where = f"{len(namespaces)} namespace{'s' if len(namespaces) != 1 else ''}"
            return f"{len(clusters)} cluster{plural} × {where}"  # noqa: RUF001 - a times sign
        return f"{len(clusters)} cluster{plural}, every namespace"


def count_approvals(requests: Iterable[AccessRequest]) -> None:
    """Set `approval_count` on each of a page of requests, in one query."""
    page = list(requests)
    counts = dict(
        Approval.objects.filter(request__in=page, decision=Decision.APPROVE)
        .values("request_id")
        .annotate(n=Count("id"))
        .values_list("request_id", "n")
    )
    for req in page:
        req.approval_count = counts.get(req.pk, 0)  # type: ignore[attr-defined]


def inbox_rows(requests: Iterable[AccessRequest]) -> list[InboxRow]:
    """Annotate a page of pending requests (already fetched) with their reach: no N+1."""
    clusters, roles = fleet().cluster_specs(), role_specs()
    check = fleet().namespace_check()
    rows = []
    for req in requests:
        reach = reach_of(req.role.name, _grant_scope(req), clusters, roles)  # type: ignore[arg-type]
        notes = (
            missing_namespace_notes(
                [r.cluster for r in reach if r.definition],
                {"namespaces": req.namespaces},
                check,
            )
            if req.state == RequestState.PENDING
            else []
        )
        rows.append(InboxRow(req, reach, getattr(req, "approval_count", 0), notes))
    return rows


# --- "what can this person do?" (operators) ---------------------------------------------------


@dataclass(frozen=True)
class ClusterRollout:
    """One cluster a held grant reaches: what it becomes there and whether it is in force."""

    reach: Reach
    state: str  # "in force", "pending" or "failed"
    detail: str


@dataclass(frozen=True)
class PersonGrant:
    """A grant a person holds, with its rollout on every live cluster it reaches."""

    held: HeldAccess
    rollout: list[ClusterRollout]

    @property
    def states(self) -> str:
        """The rollout in a few words: "2 in force, 1 pending"."""
        counts: dict[str, int] = {}
        for row in self.rollout:
            counts[row.state] = counts.get(row.state, 0) + 1
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no cluster"


def person_access(person: Person) -> list[PersonGrant]:
    """Every grant in force for `person` (personal and through teams) with its rollout per
    cluster, from each cluster's newest reconcile: a constant number of queries."""

    rollout = fleet().rollout()
    return [
        PersonGrant(
            held=held,
            rollout=[
                ClusterRollout(reach, *rollout(held.grant.pk, reach.cluster))
                for reach in held.clusters
            ],
        )
        for held in access_of(person)
    ]


def grant_rollout(grant: Grant) -> list[dict[str, str]]:
    """Per live cluster the grant reaches: in force, pending (and why) or failed (and why)."""
    spec = grant_spec(grant)
    rollout = fleet().rollout()
    rows = []
    for cluster in fleet().cluster_specs():
        if spec.reaches(cluster):
            state, detail = rollout(grant.pk, cluster.name)
            rows.append({"cluster": cluster.name, "state": state, "detail": detail})
    return rows


def find_people(query: str, limit: int = 50) -> QuerySet[Person]:
    """People whose username, name or email contains `query`, active first."""
    query = query.strip()
    people = Person.objects.all()
    if query:
        people = people.filter(
            Q(username__icontains=query)
            | Q(display_name__icontains=query)
            | Q(email__icontains=query)
        )
    return people.order_by("-is_active", "username")


# --- a directory sync under way (the health page follows it) ----------------------------------

# A sync asked for but not started after this long: no worker is taking tasks.
SYNC_QUEUE_PATIENCE = timedelta(minutes=10)
# A sync "running" for longer than this died with its worker (its lock went with its transaction).
SYNC_RUN_PATIENCE = timedelta(hours=1)


@dataclass
class SyncProgress:
    """Where the newest directory sync stands, and the reconciles it queued."""

    sync: DirectorySync | None
    # Set while a sync this operator asked for has not started yet.
    queued_at: datetime | None = None
    previous_duration_s: float | None = None
    reconciles: Any = None  # fleet().reconcile_progress()

    @property
    def waiting_for_worker(self) -> bool:
        return self.queued_at is not None

    @property
    def queue_stalled(self) -> bool:
        return self.queued_at is not None and timezone.now() - self.queued_at > SYNC_QUEUE_PATIENCE

    @property
    def running(self) -> bool:
        return self.sync is not None and self.sync.status == "running"

    @property
    def run_stalled(self) -> bool:
        return self.running and timezone.now() - self.sync.started_at > SYNC_RUN_PATIENCE  # type: ignore[union-attr]

    @property
    def elapsed_s(self) -> int:
        return int((timezone.now() - self.sync.started_at).total_seconds()) if self.sync else 0

    @property
    def polling(self) -> bool:
        """Whether the page should ask again: something is still to happen."""
        if self.waiting_for_worker:
            return not self.queue_stalled
        if self.running:
            return not self.run_stalled
        return self.reconciles is not None and not (
            self.reconciles.finished or self.reconciles.stalled
        )


def sync_progress(queued_at: datetime | None = None) -> SyncProgress:
    """The newest sync (or the one `queued_at` asked for, if it has not started yet)."""

    sync = last_sync()
    if queued_at is not None and sync is not None and sync.started_at >= queued_at:
        queued_at = None  # it has started
    progress = SyncProgress(sync=sync, queued_at=queued_at)
    if sync is not None and sync.status == "running":
        progress.previous_duration_s = (
            DirectorySync.objects.filter(status="succeeded")
            .order_by("-started_at", "-id")
            .values_list("duration_s", flat=True)
            .first()
        )
    if sync is not None and sync.reconcile_cluster_ids:
        progress.reconciles = fleet().reconcile_progress(
            sync.reconcile_cluster_ids, sync.started_at
        )
    return progress


# --- the request page's cluster picker --------------------------------------------------------

PICKER_LIMIT = 30


def cluster_picker(
    environments: Iterable[str],
    tiers: Iterable[str],
    search: str,
    selected: Iterable[str],
    limit: int | None = None,
) -> ClusterPicker:
    """Live clusters of the chosen environments and tiers that match the search, the ticked
    ones first: a constant number of queries, however large the fleet."""
    return fleet().cluster_picker(
        list(environments), list(tiers), search, selected, limit or PICKER_LIMIT
    )


# --- access reviews ---------------------------------------------------------------------------


def in_force_q(now: datetime, prefix: str = "grant__") -> Q:
    """The grant (reached through `prefix`) is in force at `now`: not revoked, not expired."""
    return Q(**{f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def review_items_with_details(items: QuerySet[ReviewItem]) -> QuerySet[ReviewItem]:
    """Everything a page shows about items, in a constant number of queries."""
    return items.select_related(
        "campaign",
        "decided_by",
        "grant__role",
        "grant__team",
        "grant__person__manager",
        "grant__created_by",
        "grant__revoked_by",
    ).prefetch_related(
        Prefetch(
            "grant__team__owners",
            queryset=Person.objects.filter(is_active=True).order_by("username"),
            to_attr="active_owners",
        )
    )


def item_leads(item: ReviewItem) -> list[Person]:
    """The item's reviewers from the directory (empty: nobody leads it; operators review)."""
    grant = item.grant
    team = grant.team
    if team is not None:
        if not team.is_active:
            return []
        owners = getattr(team, "active_owners", None)
        return list(owners) if owners is not None else leads.team_leads(team)
    manager = leads.manager_of(grant.person) if grant.person is not None else None
    return [manager] if manager is not None else []


def describe_subject(grant: Grant) -> str:
    if grant.team is not None:
        return f"team {grant.team.name}"
    person = grant.person
    if person is None:  # the database's grant_one_subject constraint rules this out
        return f"grant #{grant.pk}"
    name = f" ({person.display_name})" if person.display_name else ""
    return f"{person.username}{name}"


def describe_scope(grant: Grant) -> str:
    """The grant's scope in words: where the role applies."""
    parts = [
        f"environments {', '.join(grant.environments)}"
        if grant.environments
        else "every environment"
    ]
    if grant.tiers:
        parts.append(f"tiers {', '.join(grant.tiers)}")
    if grant.clusters:
        parts.append(f"clusters {', '.join(grant.clusters)}")
    if grant.cluster_selector:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(grant.cluster_selector.items()))
        parts.append(f"clusters labelled {labels}")
    parts.append(
        f"namespaces {', '.join(grant.namespaces)}"
        if grant.namespaces
        else "every namespace the role covers"
    )
    return "; ".join(parts)


def describe_end(grant: Grant, now: datetime) -> str:
    """Why the grant is no longer in force ("" while it is)."""
    if grant.revoked_at is not None:
        who = grant.revoked_by.get_username() if grant.revoked_by else "Warden"
        when = timezone.localtime(grant.revoked_at).strftime("%Y-%m-%d %H:%M")
        reason = f": {grant.revoke_reason}" if grant.revoke_reason else ""
        return f"revoked by {who} on {when}{reason}"
    if grant.expires_at is not None and grant.expires_at <= now:
        return f"expired on {timezone.localtime(grant.expires_at).strftime('%Y-%m-%d %H:%M')}"
    return ""


@dataclass
class ItemRow:
    """One item as a page or an email shows it."""

    item: ReviewItem
    leads: list[Person]
    subject: str
    scope: str
    since: datetime
    granted_by: str
    ended: str
    overdue: bool

    @property
    def no_lead(self) -> bool:
        return not self.leads

    @property
    def left(self) -> bool:
        """The grant's person has left the directory (their grace not over yet)."""
        person = self.item.grant.person
        return person is not None and not person.is_active

    @property
    def unreviewed(self) -> bool:
        return self.item.decision == ReviewDecision.PENDING and not self.ended


def review_rows(items: Iterable[ReviewItem], today: date | None = None) -> list[ItemRow]:
    """Page rows for items loaded `with_details`."""
    now = timezone.now()
    today = today or timezone.localdate()
    result = []
    for item in items:
        grant = item.grant
        ended = describe_end(grant, now)
        result.append(
            ItemRow(
                item=item,
                leads=item_leads(item),
                subject=describe_subject(grant),
                scope=describe_scope(grant),
                since=grant.starts_at or grant.created_at,
                granted_by=(
                    grant.created_by.get_username() if grant.created_by else "Warden (policy)"
                ),
                ended=ended,
                overdue=(
                    item.campaign.is_open
                    and item.decision == ReviewDecision.PENDING
                    and not ended
                    and today > item.campaign.due_on
                ),
            )
        )
    return result


@dataclass(frozen=True)
class CampaignCounts:
    """How far a campaign is: decisions taken, what waits, and what ended elsewhere."""

    total: int
    kept: int
    revoked: int
    unreviewed: int
    ended_elsewhere: int
    overdue: int

    @property
    def decided(self) -> int:
        return self.kept + self.revoked


def review_counts(campaign: ReviewCampaign, today: date | None = None) -> CampaignCounts:
    now = timezone.now()
    today = today or timezone.localdate()
    pending = Q(decision=ReviewDecision.PENDING)
    in_force = in_force_q(now)
    figures = campaign.items.aggregate(
        total=Count("id"),
        kept=Count("id", filter=Q(decision=ReviewDecision.KEPT)),
        revoked=Count("id", filter=Q(decision=ReviewDecision.REVOKED)),
        unreviewed=Count("id", filter=pending & in_force),
        ended=Count("id", filter=pending & ~in_force),
    )
    overdue = figures["unreviewed"] if campaign.is_open and today > campaign.due_on else 0
    return CampaignCounts(
        total=figures["total"],
        kept=figures["kept"],
        revoked=figures["revoked"],
        unreviewed=figures["unreviewed"],
        ended_elsewhere=figures["ended"],
        overdue=overdue,
    )


def unreviewed_items(campaign: ReviewCampaign) -> QuerySet[ReviewItem]:
    """Items nobody decided whose grant is still in force."""
    return campaign.items.filter(in_force_q(timezone.now()), decision=ReviewDecision.PENDING)
