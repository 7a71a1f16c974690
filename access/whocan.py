""" "Who can do X on cluster Y?": the people and teams whose grants in force allow an action there.

Pure: no database and no network. The caller (clusters.answers.who_can_answer) loads what the
compiler loads (grants in force, the role catalogue, the directory facts those grants need) and
the rules of the built-in ClusterRoles as the cluster holds them; this module judges each role as
kube-apiserver's RBAC authorizer would (access.forbidden), then keeps the grants whose bindings,
as the compiler writes them, reach the action.

The answer is about what Warden declares and writes. Bindings Warden does not own (shadow
access) are reported by the caller from the hourly scan, not judged here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from access.forbidden import (
    AccessAttempt,
    CatalogueRole,
    RoleVerdict,
    explain,
    grant_covers,
)
from access.specs import ClusterSpec, DirectorySnapshot, GrantSpec
from access.words import count_of


@dataclass(frozen=True)
class Holder:
    """One grant in force that allows the action on the cluster, and who it gives it to."""

    grant: GrantSpec
    verdict: RoleVerdict
    # The active people who hold it: the person of a personal grant, or the team's members.
    people: tuple[str, ...]
    # From the cluster's newest reconcile: True = its binding is there, False = not yet (see
    # `pending`), None = the cluster was never reconciled.
    in_force: bool | None = None
    pending: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return f"team {self.grant.team}" if self.grant.team else f"person {self.grant.person}"

    @property
    def namespaces(self) -> str:
        """Where the grant binds the role, in words."""
        return ", ".join(self.grant.namespaces) if self.grant.namespaces else "the role's scope"


@dataclass(frozen=True)
class PersonRoute:
    """A person who can do it, and every grant that gives it to them."""

    username: str
    via: tuple[str, ...]


@dataclass
class WhoCanAnswer:
    """Who can do `attempt` on `cluster`, through which role and grant."""

    attempt: AccessAttempt
    cluster: str
    verdicts: list[RoleVerdict]
    holders: list[Holder] = field(default_factory=list)
    people: list[PersonRoute] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def allowing_roles(self) -> list[RoleVerdict]:
        return [v for v in self.verdicts if v.allows]

    @property
    def teams(self) -> list[str]:
        return sorted({h.grant.team for h in self.holders if h.grant.team})


def who_can(
    attempt: AccessAttempt,
    cluster: ClusterSpec,
    roles: Sequence[CatalogueRole],
    cluster_role_rules: Mapping[str, Sequence[Mapping[str, Any]]],
    grants: Iterable[GrantSpec],
    directory: DirectorySnapshot,
    now: datetime,
    *,
    unreadable: Mapping[str, str] | None = None,
    reconciled: frozenset[int] | None = None,
    pending: Mapping[str, Sequence[str]] | None = None,
) -> WhoCanAnswer:
    """The grants in force whose bindings on `cluster` allow `attempt`, and the people they reach.

    `directory.team_members` must hold the (effective) members of every team the grants name,
    whatever the cluster's binding mode: the answer names people either way. `reconciled` is the
    set of grant ids the cluster's newest reconcile put in force (None: never reconciled), and
    `pending` that run's reasons per grant id.
    """
    explanation = explain(attempt, cluster, roles, cluster_role_rules, unreadable)
    answer = WhoCanAnswer(attempt=attempt, cluster=cluster.name, verdicts=explanation.verdicts)
    answer.notes.extend(explanation.notes)
    allowing = {v.role: v for v in explanation.verdicts if v.allows}
    routes: dict[str, list[str]] = defaultdict(list)
    inactive = 0
    for grant in sorted(grants, key=lambda g: g.id):
        if not grant.in_force(now) or grant.role not in allowing:
            continue
        if not grant_covers(grant, cluster, roles, attempt):
            continue
        people = _people_of(grant, directory)
        if people is None:
            inactive += 1
            continue
        holder = Holder(
            grant=grant,
            verdict=allowing[grant.role],
            people=people,
            in_force=None if reconciled is None else grant.id in reconciled,
            pending=tuple((pending or {}).get(str(grant.id), ())),
        )
        answer.holders.append(holder)
        via = f"team {grant.team}" if grant.team else "a personal grant"
        for username in people:
            routes[username].append(f"{grant.role} via {via} (grant #{grant.id})")
    answer.people = [PersonRoute(u, tuple(routes[u])) for u in sorted(routes)]
    if inactive:
        answer.notes.append(
            f"{count_of(inactive, 'grant')} that would allow it name people or teams no longer "
            "active in the directory: Warden writes nothing for them."
        )
    if any(h.grant.team for h in answer.holders) and cluster.bind_groups:
        answer.notes.append(
            f"{cluster.name} binds teams as groups ({cluster.group_prefix or 'no'} prefix): a "
            "member is allowed when the token they present carries the group."
        )
    if any(h.in_force is False for h in answer.holders):
        answer.notes.append(
            "Some of these grants are not in force on the cluster yet (see each one): the next "
            "reconcile puts them there."
        )
    return answer


def _people_of(grant: GrantSpec, directory: DirectorySnapshot) -> tuple[str, ...] | None:
    """Who a grant reaches as the compiler sees it; None when its subject is inactive."""
    if grant.person is not None:
        return (grant.person,) if grant.person in directory.active_people else None
    if grant.team is None or grant.team not in directory.active_teams:
        return None
    members = directory.team_members.get(grant.team, frozenset()) & directory.active_people
    return tuple(sorted(members))
