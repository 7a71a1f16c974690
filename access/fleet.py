"""What the people side asks of the fleet.

The machine side (clusters/) builds on the people side: it reads people, roles and grants
through access.specs and owns the clusters. access/ never imports clusters/. The questions
about the fleet that requests, previews and pages of the people side need are this interface,
answered by whatever the clusters app connects when Django starts (clusters.fleet.ClusterFleet);
the answers are plain values (access.specs and the dataclasses below).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from access.models import Grant, Person, Role, Team
from access.specs import ClusterSpec, GrantSpec, RoleDefinitionSpec, RoleSpec, role_specs

# --- plans: what a change would write on each cluster, before it is made -----------------------

NEW_GRANT_ID = 0  # a grant not saved yet: its bindings are annotated with its id once it is


@dataclass(frozen=True)
class Change:
    """A change to what the fleet must hold: grants to add and remove, roles to redefine."""

    add: Sequence[GrantSpec] = ()
    remove: frozenset[int] = frozenset()
    roles: Mapping[str, RoleSpec] = field(default_factory=dict)

    def touches(self, grant: GrantSpec) -> bool:
        return grant.id in self.remove or grant.role in self.roles


@dataclass(frozen=True)
class ObjectChange:
    """One object a plan writes, and in words what changes."""

    action: str  # create, update, recreate, delete
    kind: str
    namespace: str
    name: str
    details: tuple[str, ...] = ()


@dataclass
class ClusterPlan:
    cluster: str
    changes: list[ObjectChange] = field(default_factory=list)
    pending: dict[int, list[str]] = field(default_factory=dict)
    error: str = ""

    @property
    def empty(self) -> bool:
        return not self.changes and not self.error


# --- the request page's cluster picker --------------------------------------------------------


@dataclass(frozen=True)
class PickerCluster:
    """A cluster offered in the picker."""

    name: str
    environment: str
    tier: str
    checked: bool


@dataclass(frozen=True)
class ClusterPicker:
    """Live clusters of the chosen environments and tiers that match the search, with the
    ticked ones always shown (first), so that a search never hides a choice already made."""

    clusters: list[PickerCluster]
    more: int
    search: str
    matching: int


class NamespaceCheck(Protocol):
    def __call__(self, clusters: Iterable[str], wanted: Iterable[str]) -> dict[str, list[str]]:
        """The namespaces of `wanted` (names, not patterns) that each cluster lacks."""


class Rollout(Protocol):
    def __call__(self, grant_id: int, cluster: str) -> tuple[str, str]:
        """Where a grant stands on a cluster after its newest reconcile: (state, detail), the
        state "in force", "pending" or "failed"."""


class Fleet(Protocol):
    """The questions; clusters.fleet.ClusterFleet answers them."""

    def cluster_specs(self) -> list[ClusterSpec]:
        """Every live (not retired) cluster as the compiler sees it, by name."""

    def cluster_picker(
        self,
        environments: Sequence[str],
        tiers: Sequence[str],
        search: str,
        selected: Iterable[str],
        limit: int,
    ) -> ClusterPicker:
        """Live clusters to offer on the request page (a constant number of queries)."""

    def namespace_check(self) -> NamespaceCheck:
        """A check of named namespaces against the clusters answering now (each cluster asked
        at most once a minute; one check serves a whole page of requests)."""

    def rollout(self) -> Rollout:
        """Where grants stand on each live cluster, as its newest reconcile left them."""

    def reconcile_progress(self, cluster_ids: list[int], since: datetime) -> Any:
        """How the reconciles asked of these clusters at `since` are going (finished, stalled,
        percent, failures)."""

    def plan(self, change: Change) -> list[ClusterPlan]:
        """The diff each cluster the change reaches would see if it were made now."""

    def reconcile_for_grants(self, grant_ids: Iterable[int]) -> list[int]:
        """Queue a reconcile of the live clusters these grants reach; their ids."""

    def reconcile_for_subjects(
        self,
        team_ids: Iterable[int],
        person_ids: Iterable[int],
        membership_team_ids: Iterable[int] = (),
    ) -> list[int]:
        """After a directory change: queue a reconcile where it changes what clusters must
        hold; their ids."""


_connected: list[Fleet] = []


def connect(answering: Fleet) -> None:
    """The clusters app connects its answers when Django starts (its AppConfig.ready)."""
    _connected[:] = [answering]


def fleet() -> Fleet:
    if not _connected:
        raise ImproperlyConfigured(
            "No fleet is connected to the people side: the clusters app connects it when "
            "Django starts; is 'clusters' in INSTALLED_APPS?"
        )
    return _connected[0]


# --- plans of the changes operators make ------------------------------------------------------


def plan_new_grant(
    *,
    role: Role,
    team: Team | None = None,
    person: Person | None = None,
    expires_at: datetime | None = None,
    **scope: Any,
) -> list[ClusterPlan]:
    """What a grant would write, before it is saved."""
    selector = scope.get("cluster_selector") or {}
    spec = GrantSpec(
        id=NEW_GRANT_ID,
        role=role.name,
        team=team.name if team is not None else None,
        person=person.username if person is not None else None,
        environments=tuple(scope.get("environments") or ()),
        tiers=tuple(scope.get("tiers") or ()),
        clusters=tuple(scope.get("clusters") or ()),
        selector=tuple(sorted(selector.items())),
        namespaces=tuple(scope.get("namespaces") or ()),
        expires_at=expires_at,
    )
    return fleet().plan(Change(add=(spec,)))


def plan_revoke(grant: Grant) -> list[ClusterPlan]:
    """What revoking a grant would remove."""
    return fleet().plan(Change(remove=frozenset({grant.pk})))


def plan_role_definition(
    role: Role, *, environment: str, tier: str, **values: Any
) -> list[ClusterPlan]:
    """What redefining `role` for an environment/tier would change on the clusters it reaches."""

    current = role_specs().get(role.name) or RoleSpec(role.name, ())
    replacement = RoleDefinitionSpec(
        environment=environment,
        tier=tier,
        cluster_role=values.get("cluster_role", ""),
        rules=tuple(values.get("rules") or ()),
        cluster_wide=values.get("scope") == "cluster",
        namespaces=tuple(values.get("namespaces") or ()),
        allowed=values.get("allowed", True),
    )
    others = tuple(d for d in current.definitions if (d.environment, d.tier) != (environment, tier))
    return fleet().plan(Change(roles={role.name: RoleSpec(role.name, (*others, replacement))}))
