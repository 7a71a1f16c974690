"""Approval policies: who must approve access where. Every change is checked and audited.

Both the operators' policy pages and the admin site save through here, so a change made either
way is validated the same and leaves the same audit event (`policy.saved`, `policy.deleted`,
with the policy before and after). Requests already waiting keep what their policy asked for
when they were made (copied onto the request); a change governs the requests made after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from access import audit
from access.models import ApprovalPolicy, Role, Team
from core.types import Actor

# The facts of a policy an audit event records (its teams and roles are added by name).
MANY = (*ApprovalPolicy.TEAM_FIELDS, *ApprovalPolicy.ROLE_FIELDS)
POLICY_FIELDS = tuple(
    "role_id" if name == "role" else name for name in ApprovalPolicy.SETTINGS if name not in MANY
)
# More approvals than this is a typing mistake, not a policy.
MAX_APPROVALS = 5


def policy_facts(policy: ApprovalPolicy) -> dict[str, Any]:
    """What a policy is, for the audit trail: its fields, and its teams and roles by name."""
    facts = {name: getattr(policy, name) for name in POLICY_FIELDS}
    saved = bool(policy.pk)
    for name in MANY:
        facts[name] = sorted(getattr(policy, name).values_list("name", flat=True)) if saved else []
    return facts


def check_policy(policy: ApprovalPolicy) -> None:
    """The rules a policy must keep; ValidationError naming each field to fix."""
    problems: dict[str, list[str]] = {}

    def problem(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    if not (policy.name or "").strip():
        problem("name", "Give the policy a name people will recognise.")
    if policy.approvals_required is None or policy.approvals_required > MAX_APPROVALS:
        problem("approvals_required", f"Between 0 (granted at once) and {MAX_APPROVALS}.")
    longest, usual = policy.max_duration, policy.default_duration
    if longest is None or longest <= timedelta(0):
        problem("max_duration", "The longest duration must be positive.")
    if usual is None or usual <= timedelta(0):
        problem("default_duration", "The usual duration must be positive.")
    elif longest is not None and usual > longest:
        problem("default_duration", "The usual duration cannot be longer than the longest one.")
    glass = policy.break_glass_duration
    if policy.break_glass_allowed:
        if glass is None or glass <= timedelta(0):
            problem("break_glass_duration", "Say how long break-glass access lasts.")
        elif longest is not None and glass > longest:
            problem("break_glass_duration", "Break-glass access cannot outlast the longest one.")
    if problems:
        raise ValidationError(problems)


def check_break_glass(policy: ApprovalPolicy, teams: Iterable[Team], roles: Iterable[Role]) -> None:
    """Break-glass, when allowed, names who may break glass (teams) and for which roles; the
    teams are in the directory, and a policy for one role names that role."""
    if not policy.break_glass_allowed:
        return
    teams, roles = list(teams), list(roles)
    problems: dict[str, list[str]] = {}
    if not teams:
        problems["break_glass_teams"] = ["Name the teams whose members may break glass."]
    inactive = sorted(t.name for t in teams if not t.is_active)
    if inactive:
        problems["break_glass_teams"] = [f"No longer in the directory: {', '.join(inactive)}."]
    if not roles:
        problems["break_glass_roles"] = ["Name the roles break-glass may give."]
    elif policy.role_id and any(r.pk != policy.role_id for r in roles):
        problems["break_glass_roles"] = [
            "This policy governs one role only: break-glass can give no other."
        ]
    if problems:
        raise ValidationError(problems)


def record_policy_saved(
    policy: ApprovalPolicy, *, before: dict[str, Any] | None, actor: Actor, reason: str = ""
) -> None:
    """Audit a saved policy (call inside the transaction that saved it, teams included)."""
    audit.record(
        "policy.saved",
        actor=actor,
        obj=policy,
        before=before,
        after=policy_facts(policy),
        reason=reason,
    )


def save_policy(
    policy: ApprovalPolicy,
    *,
    approver_teams: Iterable[Team],
    actor: Actor,
    reason: str = "",
    break_glass_teams: Iterable[Team] = (),
    break_glass_roles: Iterable[Role] = (),
) -> ApprovalPolicy:
    """Create or change a policy (the unsaved field values on `policy`), its approver teams and
    who may break glass under it for which roles (cleared when break-glass is off)."""
    check_policy(policy)
    glass_teams, glass_roles = list(break_glass_teams), list(break_glass_roles)
    check_break_glass(policy, glass_teams, glass_roles)
    if not policy.break_glass_allowed:
        glass_teams, glass_roles = [], []
    teams = list(approver_teams)
    inactive = sorted(t.name for t in teams if not t.is_active)
    if inactive:
        raise ValidationError(
            {"approver_teams": f"No longer in the directory: {', '.join(inactive)}."}
        )
    with transaction.atomic():
        before = None
        if policy.pk:
            current = ApprovalPolicy.objects.select_for_update().get(pk=policy.pk)
            before = policy_facts(current)
        # The unique constraint treats "any role" (NULL) as one value on PostgreSQL 15+ only:
        # ask first, and keep the constraint for the race.
        if _other_at_same_place(policy) is not None:
            raise ValidationError(_taken(policy))
        try:
            with transaction.atomic():
                policy.save()
        except IntegrityError:
            raise ValidationError(_taken(policy)) from None
        policy.approver_teams.set(teams)
        policy.break_glass_teams.set(glass_teams)
        policy.break_glass_roles.set(glass_roles)
        after = policy_facts(policy)
        if before != after:
            record_policy_saved(policy, before=before, actor=actor, reason=reason)
    return policy


def delete_policy(policy: ApprovalPolicy, *, actor: Actor, reason: str = "") -> None:
    """Remove a policy; requests already made keep what it asked for."""
    with transaction.atomic():
        audit.record(
            "policy.deleted", actor=actor, obj=policy, before=policy_facts(policy), reason=reason
        )
        policy.delete()


def _other_at_same_place(policy: ApprovalPolicy) -> ApprovalPolicy | None:
    return (
        ApprovalPolicy.objects.filter(
            environment=policy.environment, tier=policy.tier, role=policy.role
        )
        .exclude(pk=policy.pk)
        .first()
    )


def _taken(policy: ApprovalPolicy) -> str:
    other = _other_at_same_place(policy)
    where = describe_where(policy)
    name = f" (“{other.name}”)" if other is not None else ""
    return f"A policy for {where} exists already{name}: change that one instead."


def describe_where(policy: ApprovalPolicy) -> str:
    """Where a policy applies, in words: "prod, any tier, any role"."""
    role = policy.role.name if policy.role_id and policy.role else "any role"
    return f"{policy.environment or 'any environment'}, {policy.tier or 'any tier'}, {role}"
