"""Roles (names, descriptions, rank) and approval policies: saved and deleted, always audited.

What a role becomes in Kubernetes is `set_role_definition` (access/services/grants.py); these
are the rest of the catalogue, used by the REST API and access as code (the admin site records
the same audit events with the same facts).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction

from access import audit
from access.models import ApprovalPolicy, Role, Team
from access.services import policies
from core.types import Actor

ROLE_FIELDS = ["name", "display_name", "description", "rank"]


def role_facts(role: Role) -> dict[str, Any]:
    return {name: getattr(role, name) for name in ROLE_FIELDS}


def save_role(
    role: Role | None,
    *,
    name: str,
    display_name: str,
    description: str = "",
    rank: int = 100,
    actor: Actor = None,
    reason: str = "",
) -> Role:
    """Create a role (role=None) or change one's name, display name, description or rank."""
    with transaction.atomic():
        if role is not None:
            role = Role.objects.select_for_update().get(pk=role.pk)
        before = role_facts(role) if role is not None else None
        role = role or Role()
        role.name, role.display_name = name, display_name
        role.description, role.rank = description, rank
        role.full_clean()
        after = role_facts(role)
        if after == before:
            return role
        role.save()
        audit.record("role.saved", actor=actor, obj=role, before=before, after=after, reason=reason)
    return role


def delete_role(role: Role, *, actor: Actor, reason: str = "") -> None:
    """Remove a role, and say what goes with it: the policies made for it alone are deleted
    (each audited, naming the role), and policies that let break-glass give it lose it."""
    why = f"its role {role.name!r} was deleted" + (f": {reason}" if reason else "")
    with transaction.atomic():
        role = Role.objects.select_for_update().get(pk=role.pk)
        for policy in ApprovalPolicy.objects.filter(role=role).order_by("pk"):
            policies.delete_policy(policy, actor=actor, reason=why)
        for policy in ApprovalPolicy.objects.filter(break_glass_roles=role).order_by("pk"):
            before = policies.policy_facts(policy)
            policy.break_glass_roles.remove(role)
            policies.record_policy_saved(policy, before=before, actor=actor, reason=why)
        audit.record("role.deleted", actor=actor, obj=role, before=role_facts(role), reason=reason)
        role.delete()


def save_policy(
    policy: ApprovalPolicy | None,
    *,
    name: str,
    max_duration: timedelta,
    default_duration: timedelta,
    environment: str = "",
    tier: str = "",
    role: Role | None = None,
    approvals_required: int = 1,
    approver_teams: Iterable[Team] = (),
    manager_may_approve: bool = False,
    self_approval_forbidden: bool = True,
    self_extension: bool = False,
    break_glass_allowed: bool = False,
    break_glass_duration: timedelta | None = None,
    break_glass_teams: Iterable[Team] = (),
    break_glass_roles: Iterable[Role] = (),
    actor: Actor = None,
    reason: str = "",
) -> ApprovalPolicy:
    """Create (policy=None) or change an approval policy from named values (the API and access
    as code); the checks and the audit are access.services.policies', as for the pages."""
    policy = policy or ApprovalPolicy()
    policy.name, policy.environment, policy.tier, policy.role = name, environment, tier, role
    policy.approvals_required = approvals_required
    policy.manager_may_approve = manager_may_approve
    policy.self_approval_forbidden = self_approval_forbidden
    policy.max_duration, policy.default_duration = max_duration, default_duration
    policy.self_extension = self_extension
    policy.break_glass_allowed = break_glass_allowed
    policy.break_glass_duration = break_glass_duration
    return policies.save_policy(
        policy,
        approver_teams=approver_teams,
        break_glass_teams=break_glass_teams,
        break_glass_roles=break_glass_roles,
        actor=actor,
        reason=reason,
    )


delete_policy = policies.delete_policy
policy_facts = policies.policy_facts
