"""The desired-state compiler: (grants, membership, cluster, roles) -> the RBAC a cluster must hold.

A pure function of plain values, with no database or network: the reconciler feeds it what it
loaded, and the plan view feeds it the same with one change applied, so both show the same diff.

Object count is kept low on purpose: one binding per (role, namespace) holds every subject that
role reaches there, instead of a binding per person.

Managed service accounts go through the same function: each one that reaches a cluster becomes a
ServiceAccount object there plus one binding per (role, namespace) naming it, so drift repair,
ownership labels and the diff treat machines exactly as people.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from access.specs import (
    ClusterSpec,
    DirectorySnapshot,
    GrantSpec,
    RoleDefinitionSpec,
    RoleSpec,
    place_of,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "warden"
ROLE_LABEL = "warden.io/role"
GRANTS_ANNOTATION = "warden.io/grants"
# On a ServiceAccount Warden manages and on its bindings: the ManagedServiceAccount's id.
SERVICE_ACCOUNT_ANNOTATION = "warden.io/service-account"
OWNER_TEAM_ANNOTATION = "warden.io/owner-team"
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_API = f"{RBAC_GROUP}/v1"
# The label selector the reconciler lists with: it sees only what Warden owns.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


@dataclass(frozen=True)
class ServiceAccountSpec:
    """A managed service account: a ServiceAccount on every cluster it reaches, bound to roles.

    `namespaces` says where its roles apply (names or patterns); () means its own namespace for
    namespaced roles and the whole cluster for cluster-wide ones. It reaches the clusters named,
    or those whose labels match the selector; one of the two is always given.
    """

    id: int
    name: str
    namespace: str
    roles: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    owner_team: str = ""
    # role -> the "environment/tier" pairs its approval covered; None: not limited.
    covers: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def covered(self, role: str, cluster: ClusterSpec) -> bool:
        """Whether the approval of this role covered the cluster's environment and tier."""
        if self.covers is None:
            return True
        return place_of(cluster) in dict(self.covers).get(role, ())

    def reaches(self, cluster: ClusterSpec) -> bool:
        if not self.clusters and not self.selector:
            return False  # never "the whole fleet" by omission
        labels = dict(cluster.labels)
        return (not self.clusters or cluster.name in self.clusters) and all(
            labels.get(key) == value for key, value in self.selector
        )


ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name)


@dataclass(frozen=True)
class ClusterNamespaces:
    """The namespaces a cluster holds; those being deleted take no new objects (the API server
    refuses them: "unable to create new content in namespace ... because it is being
    terminated"), so a grant there waits like one whose namespace does not exist."""

    live: tuple[str, ...]
    leaving: frozenset[str] = frozenset()

    def why_absent(self, name: str) -> str:
        if name in self.leaving:
            return f"namespace {name!r} is being deleted"
        # It may be created later; the next reconcile after that binds it.
        return f"namespace {name!r} does not exist yet"


@dataclass
class DesiredState:
    """The objects one cluster must hold, and why some grants could not be put in force."""

    objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    # grant id -> keys of the bindings that carry it
    carriers: dict[int, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    # grant id -> why it is not (fully) in force here
    pending: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    # managed service account id -> why it is not (fully) in force here
    account_pending: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    # managed service account id -> the ServiceAccount object that stands for it here
    accounts: dict[int, ObjectKey] = field(default_factory=dict)


def compile_cluster(
    cluster: ClusterSpec,
    grants: Iterable[GrantSpec],
    roles: Mapping[str, RoleSpec],
    directory: DirectorySnapshot,
    namespaces: Iterable[str],
    now: datetime,
    service_accounts: Iterable[ServiceAccountSpec] = (),
    leaving: Iterable[str] = (),
) -> DesiredState:
    """The exact RBAC objects `cluster` must hold for these grants and service accounts, now.

    `namespaces` are those that exist; `leaving`, those of them being deleted.
    """
    state = DesiredState()
    gone = frozenset(leaving)
    existing_namespaces = ClusterNamespaces(tuple(sorted(set(namespaces) - gone)), gone)
    # (role, namespace or "") -> subject -> grant ids
    bindings: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = defaultdict(
        lambda: defaultdict(set)
    )
    managed_roles: set[str] = set()
    for grant in sorted(grants, key=lambda g: g.id):
        if not grant.in_force(now) or not grant.reaches(cluster):
            continue
        if grant.covers is not None and place_of(cluster) not in grant.covers:
            state.pending[grant.id].append(
                f"its approval did not cover {place_of(cluster)}: ask again for this cluster"
            )
            continue
        role = roles.get(grant.role)
        definition = role.definition_for(cluster) if role else None
        if role is None or definition is None:
            state.pending[grant.id].append(
                f"role {grant.role!r} is not available in {cluster.environment}/{cluster.tier}"
            )
            continue
        grant_subjects = _subjects(grant, cluster, directory)
        if not grant_subjects:
            continue
        targets = _binding_namespaces(grant, definition, existing_namespaces, state)
        if targets is None:
            continue
        if not definition.cluster_role:
            managed_roles.add(role.name)
        for namespace in targets:
            for subject in grant_subjects:
                bindings[(role.name, namespace)][subject].add(grant.id)
    for account in sorted(service_accounts, key=lambda a: a.id):
        if account.reaches(cluster):
            managed_roles |= _add_service_account(
                state, account, cluster, roles, existing_namespaces
            )
    for role_name in sorted(managed_roles):
        _add_managed_cluster_role(state, roles[role_name], cluster)
    for (role_name, namespace), subjects in sorted(bindings.items()):
        role = roles[role_name]
        definition = role.definition_for(cluster)
        assert definition is not None
        cluster_role = definition.cluster_role or role.managed_cluster_role_name
        _add_binding(state, role_name, namespace, cluster_role, subjects)
    return state


def _subjects(
    grant: GrantSpec, cluster: ClusterSpec, directory: DirectorySnapshot
) -> list[tuple[str, str]]:
    """(kind, name) subjects for a grant on this cluster; inactive people never appear."""
    if grant.person is not None:
        if grant.person not in directory.active_people:
            return []
        return [("User", cluster.user_prefix + grant.person)]
    if grant.team is None or grant.team not in directory.active_teams:
        return []
    if cluster.bind_groups:
        return [("Group", cluster.group_prefix + grant.team)]
    members = directory.team_members.get(grant.team, frozenset()) & directory.active_people
    return [("User", cluster.user_prefix + username) for username in sorted(members)]


def _binding_namespaces(
    grant: GrantSpec,
    definition: RoleDefinitionSpec,
    existing: ClusterNamespaces,
    state: DesiredState,
) -> list[str] | None:
    """Namespaces to bind in ("" = cluster-wide), or None when the grant cannot apply here."""
    reasons: list[str] = []
    chosen = _scope_namespaces(grant.namespaces, definition, existing, reasons)
    if reasons:
        state.pending[grant.id].extend(reasons)
    return chosen


def _scope_namespaces(
    wanted_namespaces: tuple[str, ...],
    definition: RoleDefinitionSpec,
    existing: ClusterNamespaces,
    pending: list[str],
) -> list[str] | None:
    """Namespaces to bind in ("" = cluster-wide), or None; reasons for gaps go to `pending`."""
    if not wanted_namespaces:
        if definition.cluster_wide and not definition.namespaces:
            return [""]
        if not definition.namespaces:
            pending.append("the role needs namespaces and the grant names none")
            return None
        chosen = [ns for ns in existing.live if _matches(ns, definition.namespaces)]
    else:
        chosen = []
        for wanted in wanted_namespaces:
            found = [ns for ns in existing.live if fnmatch.fnmatchcase(ns, wanted)]
            if not found and not _is_pattern(wanted):
                pending.append(existing.why_absent(wanted))
            chosen.extend(found)
        if definition.namespaces:
            outside = [ns for ns in chosen if not _matches(ns, definition.namespaces)]
            for ns in outside:
                pending.append(f"the role does not reach namespace {ns!r} here")
            chosen = [ns for ns in chosen if ns not in outside]
    return sorted(set(chosen))


def service_account_binding_name(account: ServiceAccountSpec, role: str) -> str:
    # Colons cannot occur in namespace, account or role names, so the name is unambiguous
    # (RBAC object names are path segments: system:controller:... uses the same style).
    return f"warden-sa:{account.namespace}:{account.name}:{role}"


def _add_service_account(
    state: DesiredState,
    account: ServiceAccountSpec,
    cluster: ClusterSpec,
    roles: Mapping[str, RoleSpec],
    existing: ClusterNamespaces,
) -> set[str]:
    """The ServiceAccount and its bindings; returns the roles needing Warden's ClusterRole."""
    pending: list[str] = []
    needs_role = _add_account_objects(state, account, cluster, roles, existing, pending)
    if pending:
        state.account_pending[account.id].extend(pending)
    return needs_role


def _add_account_objects(
    state: DesiredState,
    account: ServiceAccountSpec,
    cluster: ClusterSpec,
    roles: Mapping[str, RoleSpec],
    existing: ClusterNamespaces,
    pending: list[str],
) -> set[str]:
    if account.namespace not in existing.live:
        # Warden does not create namespaces; the next reconcile after one appears writes it.
        pending.append(existing.why_absent(account.namespace))
        return set()
    key: ObjectKey = ("ServiceAccount", account.namespace, account.name)
    state.objects[key] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": account.name,
            "namespace": account.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {
                SERVICE_ACCOUNT_ANNOTATION: str(account.id),
                OWNER_TEAM_ANNOTATION: account.owner_team,
            },
        },
        # Its tokens are for machines outside the cluster; no pod mounts one by accident.
        "automountServiceAccountToken": False,
    }
    state.accounts[account.id] = key
    needs_role: set[str] = set()
    subject = {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}
    for role_name in sorted(set(account.roles)):
        role = roles.get(role_name)
        definition = role.definition_for(cluster) if role else None
        if role is None or definition is None:
            pending.append(
                f"role {role_name!r} is not available in {cluster.environment}/{cluster.tier}"
            )
            continue
        if not account.covered(role_name, cluster):
            pending.append(
                f"the approval of role {role_name!r} did not cover {place_of(cluster)}: "
                "change the account to ask for it"
            )
            continue
        wanted = account.namespaces
        if not wanted and not (definition.cluster_wide and not definition.namespaces):
            wanted = (account.namespace,)
        targets = _scope_namespaces(wanted, definition, existing, pending)
        if not targets:
            continue
        if not definition.cluster_role:
            needs_role.add(role.name)
        cluster_role = definition.cluster_role or role.managed_cluster_role_name
        name = service_account_binding_name(account, role.name)
        for namespace in targets:
            kind = "RoleBinding" if namespace else "ClusterRoleBinding"
            metadata = _metadata(name, namespace, role.name, ())
            metadata["annotations"] = {SERVICE_ACCOUNT_ANNOTATION: str(account.id)}
            state.objects[(kind, namespace, name)] = {
                "apiVersion": RBAC_API,
                "kind": kind,
                "metadata": metadata,
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role},
                "subjects": [dict(subject)],
            }
    return needs_role


def _matches(namespace: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)


def _is_pattern(value: str) -> bool:
    return any(ch in value for ch in "*?[")


def _metadata(name: str, namespace: str, role: str, grant_ids: Iterable[int]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROLE_LABEL: role},
        "annotations": {GRANTS_ANNOTATION: ",".join(str(i) for i in sorted(set(grant_ids)))},
    }
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def _add_managed_cluster_role(state: DesiredState, role: RoleSpec, cluster: ClusterSpec) -> None:
    definition = role.definition_for(cluster)
    assert definition is not None
    name = role.managed_cluster_role_name
    metadata = _metadata(name, "", role.name, ())
    del metadata["annotations"]
    state.objects[("ClusterRole", "", name)] = {
        "apiVersion": RBAC_API,
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": [normalize_rule(rule) for rule in definition.rules],
    }


def _add_binding(
    state: DesiredState,
    role: str,
    namespace: str,
    cluster_role: str,
    subjects: Mapping[tuple[str, str], set[int]],
) -> None:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    name = f"warden-{role}"
    grant_ids = {gid for ids in subjects.values() for gid in ids}
    key: ObjectKey = (kind, namespace, name)
    state.objects[key] = {
        "apiVersion": RBAC_API,
        "kind": kind,
        "metadata": _metadata(name, namespace, role, grant_ids),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role},
        "subjects": [
            {"kind": subject_kind, "apiGroup": RBAC_GROUP, "name": subject_name}
            for subject_kind, subject_name in sorted(subjects)
        ],
    }
    for gid in grant_ids:
        state.carriers[gid].add(key)


def normalize_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A PolicyRule with sorted lists and no empty fields, as the API server echoes it back."""
    out: dict[str, Any] = {}
    for field_name in ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs"):
        values = rule.get(field_name)
        if values:
            out[field_name] = sorted(set(values))
    return out
