"""A cluster's answers about access: "Why forbidden?" and "Who can?".

The role catalogue as defined on the cluster, the rules of the ClusterRoles it references read
from the cluster, the grants reaching it and what its newest reconcile put in force, judged by
the pure functions of access.forbidden and access.whocan.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from access.forbidden import AccessAttempt, CatalogueRole, Explanation, Holding, explain
from access.models import Grant, Membership, Person, Role
from access.specs import ClusterSpec, DirectorySnapshot, grant_spec, role_specs
from access.whocan import WhoCanAnswer, who_can
from access.words import count_of
from clusters.choices import ReconcileStatus
from clusters.models import Cluster, ReconcileRun
from clusters.services import cluster_role_rules, load_inputs


def catalogue_on(
    cluster: Cluster,
) -> tuple[ClusterSpec, list[CatalogueRole], dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The role catalogue as defined on `cluster`, with the rules of the ClusterRoles it
    references read from the cluster (and why some could not be read)."""

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
    return spec, catalogue, rules, unreadable


def forbidden_explanation(user: Any, attempt: AccessAttempt, cluster: Cluster) -> Explanation:
    """The "Why forbidden?" answer for `user`: the catalogue judged on `cluster`, with the
    rules of the ClusterRoles it references read from the cluster, and the user's own grants."""
    spec, catalogue, rules, unreadable = catalogue_on(cluster)
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


def newest_reconcile(cluster: Cluster) -> ReconcileRun | None:
    """The cluster's newest finished, real reconcile: what it holds now, as far as Warden knows."""
    return (
        ReconcileRun.objects.filter(cluster=cluster, dry_run=False)
        .exclude(status=ReconcileStatus.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )


def who_can_answer(attempt: AccessAttempt, cluster: Cluster) -> WhoCanAnswer:
    """Who can do `attempt` on `cluster`: the compiler's inputs for that cluster, every team's
    members, and the newest reconcile's view of which grants are in force there."""

    spec, catalogue, rules, unreadable = catalogue_on(cluster)
    inputs = load_inputs([cluster])
    teams = {g.team for g in inputs.grants if g.team}
    members: dict[str, set[str]] = {team: set() for team in teams}
    rows = Membership.objects.filter(
        team__is_active=True, team__name__in=teams, person__is_active=True
    ).values_list("team__name", "person__username")
    for team, username in rows:
        members[team].add(username)
    personal = {g.person for g in inputs.grants if g.person}
    active_people = frozenset(
        Person.objects.filter(is_active=True, username__in=personal).values_list(
            "username", flat=True
        )
    ) | frozenset(u for names in members.values() for u in names)
    directory = DirectorySnapshot(
        team_members={team: frozenset(names) for team, names in members.items()},
        active_people=active_people,
        active_teams=inputs.directory.active_teams,
    )
    run = newest_reconcile(cluster)
    answer = who_can(
        attempt,
        spec,
        catalogue,
        rules,
        inputs.grants,
        directory,
        inputs.now,
        unreadable=unreadable,
        reconciled=frozenset(run.grants_in_force or []) if run is not None else None,
        pending=(run.pending or {}) if run is not None else {},
    )
    shadow = cluster.shadow_access or []
    if shadow:
        answer.notes.append(
            f"The last scan found {count_of(len(shadow), 'binding')} on {cluster.name} that "
            "Warden does not own and that name directory people or teams: they may allow more "
            "(see the cluster's page)."
        )
    return answer


def _holdings_on(person: Person, cluster: Cluster) -> list[Holding]:
    """The person's grants in force (their own and their teams') that reach `cluster`, with
    whether the cluster's newest reconcile put each in force."""

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
    run = newest_reconcile(cluster)
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
