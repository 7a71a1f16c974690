"""The people side as the compiler reads it: plain values, no database handles.

Where a role definition applies (environment/tier), what a grant reaches, who is active: the
machine side (clusters/) reads people, roles and grants through this module only, and the
request previews, "why forbidden?" and "who can?" judge with the same values the reconciler
compiles, so what a page promises is what a cluster gets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q

from access.models import Grant, Membership, Person, Role, RoleDefinition, Team


@dataclass(frozen=True)
class ClusterSpec:
    """What the compiler needs to know of a cluster."""

    name: str
    environment: str
    tier: str
    labels: tuple[tuple[str, str], ...] = ()
    user_prefix: str = ""
    group_prefix: str = ""
    # True: bind directory groups as Group subjects; False: expand teams to their users.
    bind_groups: bool = True


def place_of(cluster: ClusterSpec) -> str:
    """Where a cluster is, as approvals cover it: "environment/tier"."""
    return f"{cluster.environment}/{cluster.tier}"


@dataclass(frozen=True)
class RoleDefinitionSpec:
    """What a role becomes where environment/tier match ("" matches any)."""

    environment: str = ""
    tier: str = ""
    # A built-in ClusterRole (view, edit, admin, cluster-admin), or "" for Warden's own rules.
    cluster_role: str = ""
    rules: tuple[Mapping[str, Any], ...] = ()
    cluster_wide: bool = False
    # Namespace names or patterns (fnmatch, e.g. "team-*") the role is limited to; () = any.
    namespaces: tuple[str, ...] = ()
    allowed: bool = True

    def specificity(self) -> int:
        return (2 if self.environment else 0) + (1 if self.tier else 0)

    def matches(self, cluster: ClusterSpec) -> bool:
        return (not self.environment or self.environment == cluster.environment) and (
            not self.tier or self.tier == cluster.tier
        )


@dataclass(frozen=True)
class RoleSpec:
    name: str
    definitions: tuple[RoleDefinitionSpec, ...]

    def definition_for(self, cluster: ClusterSpec) -> RoleDefinitionSpec | None:
        """The most specific matching definition; None when the role does not exist there."""
        matching = [d for d in self.definitions if d.matches(cluster)]
        if not matching:
            return None
        best = max(matching, key=RoleDefinitionSpec.specificity)
        return best if best.allowed else None

    @property
    def managed_cluster_role_name(self) -> str:
        return f"warden-{self.name}"


@dataclass(frozen=True)
class GrantSpec:
    """A grant in force: subject -> role over a scope. () in a scope field means any."""

    id: int
    role: str
    team: str | None = None
    person: str | None = None
    environments: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    namespaces: tuple[str, ...] = ()
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    # The "environment/tier" pairs its approval covered; None: not limited (standing grants).
    covers: tuple[str, ...] | None = None

    def in_force(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.expires_at is None or now < self.expires_at
        )

    def reaches(self, cluster: ClusterSpec) -> bool:
        labels = dict(cluster.labels)
        return (
            (not self.environments or cluster.environment in self.environments)
            and (not self.tiers or cluster.tier in self.tiers)
            and (not self.clusters or cluster.name in self.clusters)
            and all(labels.get(key) == value for key, value in self.selector)
        )


@dataclass(frozen=True)
class DirectorySnapshot:
    """Active people, and each team's active (effective) members, by name."""

    team_members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    active_people: frozenset[str] = frozenset()
    active_teams: frozenset[str] = frozenset()


def role_specs() -> dict[str, RoleSpec]:
    """The catalogue as the compiler sees it (read as plain rows: every reconcile reads it)."""
    definitions: dict[int, list[RoleDefinitionSpec]] = defaultdict(list)
    rows = RoleDefinition.objects.order_by("id").values_list(
        "role_id", "environment", "tier", "cluster_role", "rules", "scope", "namespaces", "allowed"
    )
    for role_id, environment, tier, cluster_role, rules, scope, namespaces, allowed in rows:
        definitions[role_id].append(
            RoleDefinitionSpec(
                environment=environment,
                tier=tier,
                cluster_role=cluster_role,
                rules=tuple(rules or ()),
                cluster_wide=scope == "cluster",
                namespaces=tuple(namespaces or ()),
                allowed=allowed,
            )
        )
    return {
        name: RoleSpec(name, tuple(definitions.get(role_id, ())))
        for role_id, name in Role.objects.values_list("id", "name")
    }


def grant_spec(grant: Grant) -> GrantSpec:
    return grant_spec_of_row(
        grant.pk,
        grant.role.name,
        grant.team.name if grant.team is not None else None,
        grant.person.username if grant.person is not None else None,
        grant.environments,
        grant.tiers,
        grant.clusters,
        grant.cluster_selector,
        grant.namespaces,
        grant.starts_at,
        grant.expires_at,
        grant.covers,
    )


# The fields of a grant the compiler needs, in _grant_spec's order.
GRANT_SPEC_FIELDS = (
    "id",
    "role__name",
    "team__name",
    "person__username",
    *Grant.SCOPE,
    "starts_at",
    "expires_at",
    "covers",
)


def grant_spec_of_row(
    pk: int,
    role: str,
    team: str | None,
    person: str | None,
    environments: list[str] | None,
    tiers: list[str] | None,
    clusters: list[str] | None,
    selector: dict[str, str] | None,
    namespaces: list[str] | None,
    starts_at: datetime | None,
    expires_at: datetime | None,
    covers: list[str] | None = None,
) -> GrantSpec:
    return GrantSpec(
        id=pk,
        role=role,
        team=team,
        person=person,
        environments=tuple(environments or ()),
        tiers=tuple(tiers or ()),
        clusters=tuple(clusters or ()),
        selector=tuple(sorted((selector or {}).items())),
        namespaces=tuple(namespaces or ()),
        starts_at=starts_at,
        expires_at=expires_at,
        covers=None if covers is None else tuple(covers),
    )


def grant_specs_in_force(now: datetime, starting_by: datetime | None = None) -> list[GrantSpec]:
    """grant_spec() of every grant in force (and of those starting by `starting_by`), read as
    plain rows: every reconcile reads them."""
    grants = Grant.objects.in_force(now)
    if starting_by is not None:
        grants = Grant.objects.filter(
            Q(revoked_at__isnull=True),
            Q(starts_at__isnull=True) | Q(starts_at__lte=starting_by),
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        )
    return [grant_spec_of_row(*row) for row in grants.values_list(*GRANT_SPEC_FIELDS)]


def directory_snapshot(grants: Iterable[GrantSpec], expand: bool) -> DirectorySnapshot:
    """The directory facts these grants need: active teams and people, and the members of
    each team when some cluster binds users (expand) rather than groups."""
    grants = list(grants)
    team_names = {g.team for g in grants if g.team}
    usernames = {g.person for g in grants if g.person}
    active_teams = frozenset(
        Team.objects.filter(is_active=True, name__in=team_names).values_list("name", flat=True)
    )
    team_members: dict[str, set[str]] = defaultdict(set)
    if expand and active_teams:
        rows = Membership.objects.filter(
            team__is_active=True, team__name__in=active_teams, person__is_active=True
        ).values_list("team__name", "person__username")
        for team, username in rows:
            team_members[team].add(username)
    wanted_people = usernames | {u for members in team_members.values() for u in members}
    active_people = frozenset(
        Person.objects.filter(is_active=True, username__in=wanted_people).values_list(
            "username", flat=True
        )
    )
    return DirectorySnapshot(
        team_members={team: frozenset(members) for team, members in team_members.items()},
        active_people=active_people,
        active_teams=active_teams,
    )
