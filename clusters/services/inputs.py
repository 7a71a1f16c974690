"""What the compiler reads: the clusters, roles, grants, people and service accounts as
specs, cached briefly and shared by the reconciles of one fleet pass."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from access.models import Grant, Membership, Person, Role, RoleDefinition, Team
from clusters.choices import AccountState, ClusterState
from clusters.compiler import (
    ClusterSpec,
    DirectorySnapshot,
    GrantSpec,
    RoleDefinitionSpec,
    RoleSpec,
    ServiceAccountSpec,
)
from clusters.k8s import Endpoint
from clusters.models import Cluster, ManagedServiceAccount
from clusters.reconcile import Inputs

if TYPE_CHECKING:
    pass


def endpoint_for(cluster: Cluster) -> Endpoint:
    return Endpoint(api_url=cluster.api_url, token=str(cluster.token), ca_pem=cluster.ca_bundle)


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


SPEC_FIELDS = (
    "name",
    "environment",
    "tier",
    "labels",
    "user_prefix",
    "group_prefix",
    "bind_groups",
)


def live_cluster_specs() -> list[ClusterSpec]:
    """What the compiler knows of every cluster that is not retired (no credentials read)."""
    clusters = Cluster.objects.exclude(state=ClusterState.RETIRED).only(*SPEC_FIELDS)
    return [c.spec() for c in clusters.order_by("name")]


def grant_spec(grant: Grant) -> GrantSpec:
    return _grant_spec(
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


def _grant_spec(
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
    return [_grant_spec(*row) for row in grants.values_list(*GRANT_SPEC_FIELDS)]


def live_clusters() -> list[Cluster]:
    return list(Cluster.objects.exclude(state=ClusterState.RETIRED))


def load_inputs(
    clusters: Iterable[Cluster] | None, extra_grants: Iterable[GrantSpec] = ()
) -> Inputs:
    """Grants in force, roles and just the directory facts those grants need.

    clusters: the clusters to be compiled (None: every live cluster); extra_grants: grants not
    saved yet, whose plan is being shown.
    """
    now = timezone.now()
    grants = grant_specs_in_force(now) + list(extra_grants)
    specs = live_cluster_specs() if clusters is None else [c.spec() for c in clusters]
    grants = [g for g in grants if any(g.reaches(spec) for spec in specs)]
    return Inputs(
        grants=grants,
        roles=role_specs(),
        directory=directory_snapshot(grants, expand=any(not spec.bind_groups for spec in specs)),
        now=now,
        service_accounts=account_specs(specs),
    )


# A scheduled pass compiles every cluster from the same grants, catalogue and directory: each
# worker process reads them once per RECONCILE_SHARED_INPUTS_SECONDS and shares them between
# the clusters it reconciles meanwhile (see shared_inputs).
_shared_lock = threading.Lock()
_shared: dict[str, tuple[datetime, float, Inputs]] = {}


def forget_shared_inputs() -> None:
    """Drop the inputs kept for reconciles of this process (they are read afresh next)."""
    with _shared_lock:
        _shared.clear()


def shared_inputs(not_before: datetime | None) -> Inputs | None:
    """The inputs of every live cluster as this process last read them, if read at most
    RECONCILE_SHARED_INPUTS_SECONDS ago and at or after `not_before`; else read afresh.
    None when sharing is off (0 seconds).

    Safe for scheduled passes only. A change (grant, membership, role, account, cluster)
    queues its own reconcile, which reads afresh; `not_before` (when the cluster's last run
    ended) keeps a pass from writing inputs older than those its last run wrote. Compiling
    with the current time drops grants that expired since the inputs were read.
    """
    max_age = settings.RECONCILE_SHARED_INPUTS_SECONDS
    if max_age <= 0:
        return None
    database = str(connection.settings_dict.get("NAME") or "")
    with _shared_lock:  # one read per process at a time; the other threads wait for it
        entry = _shared.get(database)
        if (
            entry is not None
            and time.monotonic() - entry[1] <= max_age
            and (not_before is None or entry[0] >= not_before)
        ):
            return dataclasses.replace(entry[2], now=timezone.now())
        now = timezone.now()
        # Grants that start while the inputs are shared are read too; the compiler puts each
        # in force from its start.
        grants = grant_specs_in_force(now, starting_by=now + timedelta(seconds=max_age))
        inputs = Inputs(
            grants=grants,
            roles=role_specs(),
            directory=directory_snapshot(
                grants,
                expand=Cluster.objects.exclude(state=ClusterState.RETIRED)
                .filter(bind_groups=False)
                .exists(),
            ),
            now=now,
            service_accounts=account_specs(None),
        )
        _shared[database] = (now, time.monotonic(), inputs)
        return inputs


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


def account_specs(clusters: list[ClusterSpec] | None) -> list[ServiceAccountSpec]:
    """Active managed service accounts that reach any of these clusters (None: every one)."""
    accounts = ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE).select_related(
        "owner_team"
    )
    if connection.features.supports_json_field_contains and clusters:
        # Only accounts naming one of these clusters, or chosen by selector alone: a reconcile
        # of one cluster does not read the whole fleet's accounts (JSON containment, indexed
        # by nothing but still done by the database).
        named = Q(clusters=[])
        for cluster in clusters:
            named |= Q(clusters__contains=[cluster.name])
        accounts = accounts.filter(named)
    accounts_list = list(accounts)
    roles: dict[int, list[str]] = defaultdict(list)
    through = ManagedServiceAccount.roles.through.objects.filter(
        managedserviceaccount_id__in=[a.pk for a in accounts_list]
    ).values_list("managedserviceaccount_id", "role__name")
    for account_id, role_name in through:
        roles[account_id].append(role_name)
    out = []
    for account in accounts_list:
        spec = account.spec(role_names=tuple(sorted(roles.get(account.pk, ()))))
        if clusters is None or any(spec.reaches(cluster) for cluster in clusters):
            out.append(spec)
    return out
