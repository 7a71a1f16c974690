"""What Warden holds now, as the declared state (and exported as a file)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from access import durations
from access.choices import GrantSource
from access.models import ApprovalPolicy, Grant, Role
from ascode.format import (
    SECTIONS,
    Declared,
    Item,
    definition_data,
    document,
    dump,
    grant_key,
    when_text,
)
from clusters.choices import AccountState, ClusterState
from clusters.models import Cluster, ManagedServiceAccount


def current() -> Declared:
    """What Warden holds now, in the file's terms."""
    state = Declared(source="Warden", sections=set(SECTIONS))
    for role in Role.objects.prefetch_related("definitions").order_by("rank", "name"):
        data: dict[str, Any] = {
            "name": role.name,
            "display_name": role.display_name,
            "description": role.description,
            "rank": role.rank,
        }
        state.roles[(role.name,)] = Item("role", (role.name,), data)
        for d in role.definitions.all():
            values = definition_data(
                role.name,
                {
                    "environment": d.environment,
                    "tier": d.tier,
                    "cluster_role": d.cluster_role,
                    "rules": d.rules,
                    "scope": d.scope,
                    "namespaces": d.namespaces,
                    "allowed": d.allowed,
                },
            )
            key: tuple[Any, ...] = (role.name, d.environment, d.tier)
            state.definitions[key] = Item("definition", key, values)
    policies = ApprovalPolicy.objects.select_related("role").prefetch_related(
        "approver_teams", "break_glass_teams", "break_glass_roles"
    )
    for p in policies:
        data = {
            "name": p.name,
            "environment": p.environment,
            "tier": p.tier,
            "role": p.role.name if p.role else "",
            "approvals_required": p.approvals_required,
            "approver_teams": sorted(t.name for t in p.approver_teams.all()),
            "manager_may_approve": p.manager_may_approve,
            "self_approval_forbidden": p.self_approval_forbidden,
            "max_duration": durations.format(p.max_duration),
            "default_duration": durations.format(p.default_duration),
            "self_extension": p.self_extension,
            "break_glass_allowed": p.break_glass_allowed,
            "break_glass_duration": durations.format(p.break_glass_duration)
            if p.break_glass_duration
            else "",
            "break_glass_teams": sorted(t.name for t in p.break_glass_teams.all()),
            "break_glass_roles": sorted(r.name for r in p.break_glass_roles.all()),
        }
        key = (p.environment, p.tier, data["role"])
        state.policies[key] = Item("policy", key, data, pk=p.pk)
    for g in _standing_grants():
        data = {
            "team": g.team.name if g.team is not None else "",
            "person": g.person.username if g.person is not None else "",
            "role": g.role.name,
            "environments": sorted(g.environments or []),
            "tiers": sorted(g.tiers or []),
            "clusters": sorted(g.clusters or []),
            "cluster_selector": dict(sorted((g.cluster_selector or {}).items())),
            "namespaces": sorted(g.namespaces or []),
            "starts_at": when_text(g.starts_at),
            "expires_at": when_text(g.expires_at),
            "reason": g.reason,
        }
        state.grants.append(Item("grant", grant_key(data), data, pk=g.pk))
    for c in Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name"):
        data = {
            "name": c.name,
            "environment": c.environment,
            "tier": c.tier,
            "labels": dict(sorted((c.labels or {}).items())),
            "user_prefix": c.user_prefix,
            "group_prefix": c.group_prefix,
            "bind_groups": c.bind_groups,
        }
        state.clusters[(c.name,)] = Item("cluster", (c.name,), data)
    for account in _active_accounts():
        data = {
            "name": account.name,
            "namespace": account.namespace,
            "description": account.description,
            "owner_team": account.owner_team.name,
            "roles": sorted(r.name for r in account.roles.all()),
            "namespaces": sorted(account.namespaces or []),
            "clusters": sorted(account.clusters or []),
            "cluster_selector": dict(sorted((account.cluster_selector or {}).items())),
            "rotation_period": durations.format(account.rotation_period),
            "grace_period": durations.format(account.grace_period),
            "token_lifetime": durations.format(account.token_lifetime),
            "show_to_owner": account.show_to_owner,
        }
        key = (account.namespace, account.name)
        state.service_accounts[key] = Item("service_account", key, data, pk=account.pk)
    return state


def _active_accounts() -> Iterable[Any]:
    return (
        ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE)
        .select_related("owner_team")
        .prefetch_related("roles")
        .order_by("namespace", "name")
    )


def _standing_grants() -> Iterable[Grant]:
    """Standing grants not yet over (in force, or starting later): what the file manages."""
    now = timezone.now()
    return (
        Grant.objects.filter(source=GrantSource.STANDING, revoked_at__isnull=True)
        .exclude(expires_at__lte=now)
        .select_related("role", "team", "person")
        .order_by("id")
    )


def export() -> str:
    """Warden's declared state as the file's text."""
    return dump(document(current()))
