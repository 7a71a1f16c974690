"""Roles (names, descriptions, rank) and approval policies: saved and deleted, always audited.

What a role becomes in Kubernetes is `set_role_definition` (access/services/grants.py); these
are the rest of the catalogue, used by the REST API and access as code (the admin site records
the same audit events with the same facts).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from access import audit
from access.models import ApprovalPolicy, Role, Team

ROLE_FIELDS = ["name", "display_name", "description", "rank"]
POLICY_FIELDS = [
    "name",
    "environment",
    "tier",
    "role_id",
    "approvals_required",
    "manager_may_approve",
    "self_approval_forbidden",
    "max_duration",
    "default_duration",
    "break_glass_allowed",
    "break_glass_duration",
]


def role_facts(role: Role) -> dict[str, Any]:
    return {name: getattr(role, name) for name in ROLE_FIELDS}


def policy_facts(policy: ApprovalPolicy) -> dict[str, Any]:
    facts = {name: getattr(policy, name) for name in POLICY_FIELDS}
    facts["approver_teams"] = sorted(policy.approver_teams.values_list("name", flat=True))
    return facts


def save_role(
    role: Role | None,
    *,
    name: str,
    display_name: str,
    description: str = "",
    rank: int = 100,
    actor: Any = None,
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
    break_glass_allowed: bool = False,
    break_glass_duration: timedelta | None = None,
    actor: Any = None,
    reason: str = "",
) -> ApprovalPolicy:
    """Create (policy=None) or change an approval policy; it changes who can get access."""
    teams = list(approver_teams)
    problems = []
    if max_duration <= timedelta(0) or default_duration <= timedelta(0):
        problems.append("Durations must be positive.")
    elif default_duration > max_duration:
        problems.append("The usual duration cannot be longer than the longest one.")
    if break_glass_duration is not None and break_glass_duration <= timedelta(0):
        problems.append("The break-glass duration must be positive.")
    inactive = sorted(t.name for t in teams if not t.is_active)
    if inactive:
        problems.append(f"Team {', '.join(inactive)} is no longer in the directory.")
    if problems:
        raise ValidationError(problems)
    try:
        with transaction.atomic():
            if policy is not None:
                policy = ApprovalPolicy.objects.select_for_update().get(pk=policy.pk)
            before = policy_facts(policy) if policy is not None else None
            policy = policy or ApprovalPolicy()
            policy.name, policy.environment, policy.tier, policy.role = (
                name,
                environment,
                tier,
                role,
            )
            policy.approvals_required = approvals_required
            policy.manager_may_approve = manager_may_approve
            policy.self_approval_forbidden = self_approval_forbidden
            policy.max_duration, policy.default_duration = max_duration, default_duration
            policy.break_glass_allowed = break_glass_allowed
            policy.break_glass_duration = break_glass_duration
            policy.full_clean()
            policy.save()
            policy.approver_teams.set(teams)
            after = policy_facts(policy)
            if after != before:
                audit.record(
                    "policy.saved",
                    actor=actor,
                    obj=policy,
                    before=before,
                    after=after,
                    reason=reason,
                )
    except IntegrityError as exc:
        raise ValidationError(
            "Another policy already covers this environment, tier and role."
        ) from exc
    return policy


def delete_policy(policy: ApprovalPolicy, *, actor: Any = None, reason: str = "") -> None:
    """Remove a policy; requests already made keep what it asked for when they were made."""
    with transaction.atomic():
        audit.record(
            "policy.deleted", actor=actor, obj=policy, before=policy_facts(policy), reason=reason
        )
        policy.delete()
