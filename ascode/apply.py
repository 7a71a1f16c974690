"""Applying a file: one transaction, through the services the pages and the API use."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from access import audit, durations
from access.models import ApprovalPolicy, Grant, Person, Role, RoleDefinition, Team
from access.services import catalogue
from access.services.grants import (
    grant_access,
    remove_role_definition,
    revoke_grant,
    set_role_definition,
)
from ascode.diff import Change, Diff, diff
from ascode.format import AsCodeError, Declared
from ascode.state import current
from clusters import serviceaccounts
from clusters.choices import AccountState
from clusters.models import Cluster, ManagedServiceAccount
from clusters.services import update_cluster
from core.types import Actor


def apply(wanted: Declared, *, actor: Actor = None, prune: bool = False) -> Diff:
    """Make Warden hold what the file says, all or nothing, through the services.

    Each change is audited by its service, with one `ascode.applied` event naming the file's
    digest; reconciles are queued when the transaction commits. A change a service refuses
    rolls everything back and is reported with the entry's line.
    """
    with transaction.atomic():
        changes = diff(wanted, current(), prune=prune)
        if changes.empty:
            return changes
        problems: list[str] = []
        for change in changes.changes:
            if change.action in ("keep",):
                continue
            try:
                _apply_one(change, actor)
            except ValidationError as exc:
                where = (
                    f"{wanted.source}:{change.item.line}"
                    if change.action != "remove"
                    else (wanted.source)
                )
                problems.extend(f"{where}: {change.item.label}: {m}" for m in exc.messages)
        if problems:
            transaction.set_rollback(True)
            raise AsCodeError(problems)
        audit.record(
            "ascode.applied",
            actor=actor,
            object_type="ascode",
            object_repr=wanted.source[:255],
            after={"file_sha256": wanted.digest, "prune": prune, **changes.counts()},
        )
    return changes


def _apply_one(change: Change, actor: Actor) -> None:
    data = change.item.data
    reason = "access as code"
    if change.kind == "role":
        role = Role.objects.filter(name=data["name"]).first()
        catalogue.save_role(role, actor=actor, reason=reason, **data)
    elif change.kind == "definition":
        role = Role.objects.get(name=data["role"])
        if change.action == "remove":
            definition = RoleDefinition.objects.get(
                role=role, environment=data["environment"], tier=data["tier"]
            )
            remove_role_definition(definition, actor=actor, reason=reason)
            return
        values = {k: v for k, v in data.items() if k not in ("role", "environment", "tier")}
        set_role_definition(
            role,
            environment=data["environment"],
            tier=data["tier"],
            actor=actor,
            reason=reason,
            **values,
        )
    elif change.kind == "policy":
        _apply_policy(change, actor, reason)
    elif change.kind == "cluster":
        cluster = Cluster.objects.get(name=data["name"])

        update_cluster(
            cluster,
            actor=actor,
            environment=data["environment"],
            tier=data["tier"],
            labels=data["labels"],
            user_prefix=data["user_prefix"],
            group_prefix=data["group_prefix"],
            bind_groups=data["bind_groups"],
            api_url=cluster.api_url,
            ca_bundle=cluster.ca_bundle,
            reason=reason,
        )
    elif change.kind == "service_account":
        _apply_service_account(change, actor, reason)
    elif change.kind == "grant":
        if change.action == "remove":
            assert change.item.pk is not None  # a grant Warden holds
            revoke_grant(Grant.objects.get(pk=change.item.pk), actor=actor, reason=reason)
            return
        grant_access(
            role=Role.objects.get(name=data["role"]),
            team=Team.objects.get(is_active=True, name=data["team"]) if data["team"] else None,
            person=Person.objects.get(is_active=True, username=data["person"])
            if data["person"]
            else None,
            actor=actor,
            reason=data["reason"] or reason,
            starts_at=parse_datetime(data["starts_at"]) if data["starts_at"] else None,
            expires_at=parse_datetime(data["expires_at"]) if data["expires_at"] else None,
            environments=data["environments"],
            tiers=data["tiers"],
            clusters=data["clusters"],
            cluster_selector=data["cluster_selector"],
            namespaces=data["namespaces"],
        )


def _apply_service_account(change: Change, actor: Actor, reason: str) -> None:
    data = change.item.data
    existing = ManagedServiceAccount.objects.filter(
        state__in=(AccountState.ACTIVE, AccountState.PENDING),
        namespace=data["namespace"],
        name=data["name"],
    ).first()
    if change.action == "remove":
        if existing is not None:
            serviceaccounts.retire_service_account(existing, actor=actor, reason=reason)
        return
    serviceaccounts.declare_service_account(
        serviceaccounts.AccountInput(
            name=data["name"],
            namespace=data["namespace"],
            description=data["description"],
            owner_team=Team.objects.get(is_active=True, name=data["owner_team"]),
            roles=list(Role.objects.filter(name__in=data["roles"])),
            namespaces=data["namespaces"],
            clusters=data["clusters"],
            cluster_selector=data["cluster_selector"],
            rotation_period=durations.parse(data["rotation_period"]),
            grace_period=durations.parse(data["grace_period"]),
            token_lifetime=durations.parse(data["token_lifetime"]),
            show_to_owner=data["show_to_owner"],
        ),
        actor=actor,
        account=existing,
        reason=reason,
    )


def _apply_policy(change: Change, actor: Actor, reason: str) -> None:
    data = change.item.data
    role = Role.objects.filter(name=data["role"]).first() if data["role"] else None
    existing = ApprovalPolicy.objects.filter(
        environment=data["environment"], tier=data["tier"], role=role
    ).first()
    if change.action == "remove":
        if existing is not None:
            catalogue.delete_policy(existing, actor=actor, reason=reason)
        return
    glass = data["break_glass_duration"]
    catalogue.save_policy(
        existing,
        name=data["name"],
        environment=data["environment"],
        tier=data["tier"],
        role=role,
        approvals_required=data["approvals_required"],
        approver_teams=list(Team.objects.filter(is_active=True, name__in=data["approver_teams"])),
        manager_may_approve=data["manager_may_approve"],
        self_approval_forbidden=data["self_approval_forbidden"],
        max_duration=durations.parse(data["max_duration"]),
        default_duration=durations.parse(data["default_duration"]),
        self_extension=data["self_extension"],
        break_glass_allowed=data["break_glass_allowed"],
        break_glass_duration=durations.parse(glass) if glass else None,
        break_glass_teams=list(
            Team.objects.filter(is_active=True, name__in=data["break_glass_teams"])
        ),
        break_glass_roles=list(Role.objects.filter(name__in=data["break_glass_roles"])),
        actor=actor,
        reason=reason,
    )
