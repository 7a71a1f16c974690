"""What a file's changes do on each cluster (the reconciler's own planning)."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime

from access import fleet
from access.choices import RoleScope
from access.specs import GrantSpec, RoleDefinitionSpec, RoleSpec, role_specs
from ascode.diff import Diff
from ascode.format import Declared
from clusters import planning
from clusters.services import live_clusters, load_inputs


def rbac_plan(changes: Diff, wanted: Declared) -> list[Any]:
    """Each affected cluster's RBAC diff if the changes were applied (read-only, dry-run)."""

    add: list[GrantSpec] = []
    for i, change in enumerate(changes.of("add")):
        if change.kind != "grant":
            continue
        d = change.item.data
        add.append(
            GrantSpec(
                id=-(i + 1),
                role=d["role"],
                team=d["team"] or None,
                person=d["person"] or None,
                environments=tuple(d["environments"]),
                tiers=tuple(d["tiers"]),
                clusters=tuple(d["clusters"]),
                selector=tuple(sorted(d["cluster_selector"].items())),
                namespaces=tuple(d["namespaces"]),
                starts_at=parse_datetime(d["starts_at"]) if d["starts_at"] else None,
                expires_at=parse_datetime(d["expires_at"]) if d["expires_at"] else None,
            )
        )
    remove = frozenset(
        c.item.pk for c in changes.of("remove") if c.kind == "grant" and c.item.pk is not None
    )
    touched_roles = {
        c.item.data["role"]
        for c in changes.changes
        if c.kind == "definition" and c.action in ("add", "change", "remove")
    }
    roles = {}
    current_specs = role_specs()
    removed_defs = {c.item.key for c in changes.of("remove") if c.kind == "definition"}
    for name in touched_roles:
        defs = [
            RoleDefinitionSpec(
                environment=d.data["environment"],
                tier=d.data["tier"],
                cluster_role=d.data["cluster_role"],
                rules=tuple(d.data["rules"]),
                cluster_wide=d.data["scope"] == RoleScope.CLUSTER,
                namespaces=tuple(d.data["namespaces"]),
                allowed=d.data["allowed"],
            )
            for key, d in wanted.definitions.items()
            if key[0] == name
        ]
        if name in current_specs:
            # Definitions not in the file stay unless this apply removes them.
            mine = {(d.environment, d.tier) for d in defs}
            defs += [
                d
                for d in current_specs[name].definitions
                if (d.environment, d.tier) not in mine
                and (name, d.environment, d.tier) not in removed_defs
            ]
        roles[name] = RoleSpec(name, tuple(defs))
    fleet_change = fleet.Change(add=tuple(add), remove=remove, roles=roles)
    moved = {c.item.data["name"]: c.item.data for c in changes.of("change") if c.kind == "cluster"}
    base = load_inputs(None).grants
    affected = {c.name for c in planning.affected_clusters(fleet_change, base)} | set(moved)
    targets = []
    for cluster in live_clusters():
        if cluster.name not in affected:
            continue
        if cluster.name in moved:
            data = moved[cluster.name]
            cluster.environment, cluster.tier = data["environment"], data["tier"]
            cluster.labels = data["labels"]
            cluster.user_prefix, cluster.group_prefix = data["user_prefix"], data["group_prefix"]
            cluster.bind_groups = data["bind_groups"]
        targets.append(cluster)
    if not targets:
        return []
    return planning.plan_change(fleet_change, clusters=targets)


def plan_text(plans: list[Any]) -> str:
    if not plans:
        return "No cluster's RBAC changes."
    lines = []
    for plan in plans:
        if plan.error:
            lines.append(f"{plan.cluster}: could not be read ({plan.error}); its plan is unknown")
            continue
        if not plan.changes:
            lines.append(f"{plan.cluster}: no change")
            continue
        lines.append(f"{plan.cluster}:")
        for c in plan.changes:
            where = f"{c.namespace}/" if c.namespace else ""
            details = f" ({'; '.join(c.details)})" if c.details else ""
            lines.append(f"  {c.action} {c.kind} {where}{c.name}{details}")
    return "\n".join(lines)
