"""Read queries of the people side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from access.directory import DirectoryPerson
from access.forbidden import AccessAttempt, CatalogueRole, Explanation, Holding, explain
from access.models import DirectorySync, Grant, Membership, Person, Role, Team, TeamNesting
from clusters.choices import ReconcileStatus
from clusters.models import Cluster, ReconcileRun


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
    """A person's effective teams; for a nested membership, the child teams it comes through."""
    memberships = list(
        Membership.objects.filter(person=person, team__is_active=True)
        .select_related("team")
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
