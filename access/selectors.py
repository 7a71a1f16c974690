"""Read queries of the people side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from access.choices import Decision
from access.directory import DirectoryPerson
from access.forbidden import AccessAttempt, CatalogueRole, Explanation, Holding, explain
from access.models import (
    AccessRequest,
    Approval,
    DirectorySync,
    Grant,
    Membership,
    Person,
    Role,
    Team,
    TeamNesting,
)
from access.services.requests import Reach, reach_of
from clusters.choices import ClusterState, ReconcileStatus
from clusters.models import Cluster, ReconcileRun
from clusters.services import live_cluster_specs, role_specs


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
    clusters, roles = live_cluster_specs(), role_specs()
    held = []
    for grant in grants:
        request = getattr(grant, "request", None)
        if grant.team_id:
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

    @property
    def clusters(self) -> list[Reach]:
        return [r for r in self.reach if r.definition is not None]

    @property
    def blast_radius(self) -> str:
        clusters = self.clusters
        namespaces = {ns for r in clusters for ns in r.namespaces}
        where = f"{len(namespaces)} namespaces" if namespaces else "cluster-wide"
        plural = "s" if len(clusters) != 1 else ""
        return f"{len(clusters)} cluster{plural} × {where}"  # noqa: RUF001 - a times sign


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
    clusters, roles = live_cluster_specs(), role_specs()
    return [
        InboxRow(
            request=req,
            reach=reach_of(req.role.name, _grant_scope(req), clusters, roles),  # type: ignore[arg-type]
            approvals=getattr(req, "approval_count", 0),
        )
        for req in requests
    ]


def forbidden_explanation(user: Any, attempt: AccessAttempt, cluster: Cluster) -> Explanation:
    """The "Why forbidden?" answer for `user`: the catalogue judged on `cluster`, with the
    rules of the ClusterRoles it references read from the cluster, and the user's own grants."""
    from clusters.services import cluster_role_rules, role_specs

    spec = cluster.spec()
    specs = role_specs()
    catalogue = [
        CatalogueRole(
            name=role.name,
            display_name=role.display_name,
            rank=role.rank,
            description=role.description,
            spec=specs[role.name],
        )
        for role in Role.objects.order_by("rank", "name")
    ]
    referenced = set()
    for role in catalogue:
        definition = role.spec.definition_for(spec)
        if definition is not None and definition.cluster_role:
            referenced.add(definition.cluster_role)
    rules, unreadable = cluster_role_rules(cluster, referenced)
    person: Person | None = getattr(user, "person", None)
    holdings = _holdings_on(person, cluster) if person is not None else []
    return explain(
        attempt,
        spec,
        catalogue,
        rules,
        unreadable,
        username=person.username if person is not None else "",
        holdings=holdings,
    )


def _holdings_on(person: Person, cluster: Cluster) -> list[Holding]:
    """The person's grants in force (their own and their teams') that reach `cluster`, with
    whether the cluster's newest reconcile put each in force."""
    from clusters.services import grant_spec

    team_names = dict(
        Membership.objects.filter(person=person, team__is_active=True).values_list(
            "team_id", "team__name"
        )
    )
    grants = (
        Grant.objects.in_force(timezone.now())
        .filter(Q(person=person) | Q(team_id__in=team_names))
        .select_related("role", "team", "person")
        .order_by("id")
    )
    spec = cluster.spec()
    reaching = [(g, grant_spec(g)) for g in grants]
    reaching = [(g, s) for g, s in reaching if s.reaches(spec)]
    if not reaching:
        return []
    run = (
        ReconcileRun.objects.filter(cluster=cluster, dry_run=False)
        .exclude(status=ReconcileStatus.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )
    in_force = set(run.grants_in_force or []) if run is not None else set()
    pending = (run.pending or {}) if run is not None else {}
    return [
        Holding(
            grant=spec_,
            via=f"team {team_names[grant.team_id]}" if grant.team_id else "you",
            in_force=grant.pk in in_force,
            pending=tuple(pending.get(str(grant.pk), ())),
        )
        for grant, spec_ in reaching
    ]


@dataclass(frozen=True)
class ReachableCluster:
    """A live cluster where a person holds access: what a kubeconfig entry for it needs."""

    cluster: Cluster
    # Where the person holds access there; empty = cluster-wide somewhere.
    namespaces: tuple[str, ...]
    username: str
    user_exec: dict[str, Any] | None


def reachable_clusters(person: Person) -> list[ReachableCluster]:
    """The live clusters the person's grants in force reach, by name, with their namespaces."""
    where: dict[str, set[str]] = {}
    cluster_wide: set[str] = set()
    for held in access_of(person):
        for reach in held.clusters:
            where.setdefault(reach.cluster, set()).update(reach.namespaces)
            if not reach.namespaces:
                cluster_wide.add(reach.cluster)
    clusters = Cluster.objects.filter(name__in=where).exclude(state=ClusterState.RETIRED)
    return [
        ReachableCluster(
            cluster=cluster,
            namespaces=() if cluster.name in cluster_wide else tuple(sorted(where[cluster.name])),
            username=f"{cluster.user_prefix}{person.username}",
            user_exec=kubeconfig_user_exec(cluster.name, person.username),
        )
        for cluster in clusters.order_by("name")
    ]


def kubeconfig_user_exec(cluster: str, username: str) -> dict[str, Any] | None:
    """WARDEN_KUBECONFIG_USER_EXEC with {cluster} and {username} filled in (None when unset)."""
    template = settings.WARDEN_KUBECONFIG_USER_EXEC
    if not template:
        return None

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{cluster}", cluster).replace("{username}", username)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return cast(dict[str, Any], fill(template))
