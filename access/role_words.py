"""A role of the catalogue in plain words: what it lets a person do, and where, in Kubernetes.

Pure: the role picker of the request page and the role catalogue page both show it. The words
for the built-in ClusterRoles follow Kubernetes' own documentation of the user-facing roles
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BUILT_IN = {
    "view": (
        "read most objects (pods, deployments, services, config maps, logs), but not Secrets, "
        "Roles or RoleBindings"
    ),
    "edit": (
        "read and change most objects, Secrets included, and run pods as any service account "
        "of the namespace; not Roles or RoleBindings"
    ),
    "admin": (
        "read and change everything in a namespace, Roles and RoleBindings included; not the "
        "namespace itself or its resource quotas"
    ),
    "cluster-admin": "do anything to any object (a super-user)",
}
VERB_GROUPS = {
    frozenset({"get", "list", "watch"}): "read",
    frozenset({"get", "list", "watch", "create", "update", "patch", "delete"}): "read and change",
    frozenset(
        {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    ): "read and change",
}


@dataclass(frozen=True)
class DefinitionWords:
    """One definition of a role (for an environment/tier) in words."""

    where: str  # "any environment, any tier" / "prod, any tier"
    offered: bool
    kube_role: str  # "ClusterRole edit" / "its own rules (ClusterRole warden-log-reader)"
    allows: list[str]  # plain sentences or one line per rule
    scope: str  # "in the namespaces you ask for" / "cluster-wide" / "only in team-*"


def rule_words(rule: Mapping[str, Any]) -> str:
    """A PolicyRule as a line a person reads: "read pods, pods/log (core API group)"."""
    verbs = list(rule.get("verbs") or [])
    verb_text = VERB_GROUPS.get(frozenset(verbs)) or ", ".join(verbs)
    if "*" in verbs:
        verb_text = "do anything to"
    urls = list(rule.get("nonResourceURLs") or [])
    if urls:
        return f"{verb_text} the paths {', '.join(urls)}"
    resources = ", ".join(rule.get("resources") or []) or "nothing"
    if resources == "*":
        resources = "every resource"
    groups = [g or "core" for g in rule.get("apiGroups") or []]
    where = "every API group" if "*" in groups else f"{', '.join(groups)} API group"
    names = rule.get("resourceNames") or []
    only = f", only the objects named {', '.join(names)}" if names else ""
    return f"{verb_text} {resources} ({where}{only})"


def definition_words(
    *,
    environment: str,
    tier: str,
    cluster_role: str,
    rules: Iterable[Mapping[str, Any]],
    cluster_wide: bool,
    namespaces: Iterable[str],
    allowed: bool,
    role_name: str,
) -> DefinitionWords:
    where = f"{environment or 'any environment'}, {tier or 'any tier'}"
    if not allowed:
        return DefinitionWords(where, False, "", ["not offered here"], "")
    namespaces = list(namespaces)
    if cluster_wide and not namespaces:
        scope = "cluster-wide, or in the namespaces you ask for"
    elif namespaces:
        scope = f"only in namespaces {', '.join(namespaces)}"
    else:
        scope = "in the namespaces you ask for"
    if cluster_role:
        known = BUILT_IN.get(cluster_role)
        allows = (
            [f"{known[0].upper()}{known[1:]}."]
            if known
            else [f"What the cluster's ClusterRole {cluster_role} allows (read from each cluster)."]
        )
        return DefinitionWords(where, True, f"ClusterRole {cluster_role}", allows, scope)
    lines = [f"{line[0].upper()}{line[1:]}." for line in (rule_words(r) for r in rules)]
    kube_role = f"its own rules (ClusterRole warden-{role_name})"
    return DefinitionWords(where, True, kube_role, lines or ["nothing"], scope)


def role_words(role: Any) -> list[DefinitionWords]:
    """Every definition of a Role (with `definitions` prefetched), general ones first."""
    definitions = sorted(
        role.definitions.all(), key=lambda d: (bool(d.environment), bool(d.tier), d.pk)
    )
    return [
        definition_words(
            environment=d.environment,
            tier=d.tier,
            cluster_role=d.cluster_role,
            rules=d.rules or [],
            cluster_wide=d.scope == "cluster",
            namespaces=d.namespaces or [],
            allowed=d.allowed,
            role_name=role.name,
        )
        for d in definitions
    ]
