"""Grants and the role catalogue: every change is validated, audited, and reconciled where it lands.

A change queues a reconcile of just the clusters it reaches, after the transaction commits, so a
worker never reads a grant that is not there yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import audit, notify
from access.choices import Environment, GrantSource, RequestState, RoleScope, Tier
from access.fleet import fleet
from access.models import AccessRequest, Grant, Person, Role, RoleDefinition, Team
from core.types import Actor, account_of

# A namespace name (RFC 1123 label) or a pattern of one with * ? [ ].
_NAMESPACE = re.compile(r"^[a-z0-9*?\[\]]([-a-z0-9*?\[\]]{0,61}[a-z0-9*?\[\]])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_RBAC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.:]{0,251}[a-z0-9])?$")
RULE_FIELDS = ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs")


def grant_facts(grant: Grant) -> dict[str, Any]:
    """What a grant is, for the audit trail and the plan page."""
    return {
        "subject": f"team:{grant.team.name}"
        if grant.team is not None
        else f"person:{grant.person}",
        "role": grant.role.name,
        "environments": grant.environments,
        "tiers": grant.tiers,
        "clusters": grant.clusters,
        "cluster_selector": grant.cluster_selector,
        "namespaces": grant.namespaces,
        "source": grant.source,
        "starts_at": grant.starts_at,
        "expires_at": grant.expires_at,
        "covers": grant.covers,
    }


def clean_scope(
    *,
    environments: Iterable[str] = (),
    tiers: Iterable[str] = (),
    clusters: Iterable[str] = (),
    cluster_selector: Mapping[str, str] | None = None,
    namespaces: Iterable[str] = (),
) -> dict[str, Any]:
    """A grant's scope, checked; each problem names the field and what to write instead."""
    problems: list[str] = []
    envs = sorted({e.strip() for e in environments if e.strip()})
    bad = [e for e in envs if e not in Environment.values]
    if bad:
        problems.append(
            f"Unknown environment {', '.join(bad)}: use {', '.join(Environment.values)}"
        )
    tier_list = sorted({t.strip() for t in tiers if t.strip()})
    bad = [t for t in tier_list if t not in Tier.values]
    if bad:
        problems.append(f"Unknown tier {', '.join(bad)}: use {', '.join(Tier.values)}")
    cluster_list = sorted({c.strip() for c in clusters if c.strip()})
    selector = {str(k).strip(): str(v).strip() for k, v in (cluster_selector or {}).items()}
    for key, value in selector.items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            problems.append(
                f"Cluster label {key}={value} is not a valid Kubernetes label (letters, digits, "
                "-, _ and ., at most 63 characters)"
            )
    ns_list = sorted({n.strip() for n in namespaces if n.strip()})
    bad = [n for n in ns_list if not _NAMESPACE.match(n)]
    if bad:
        problems.append(
            f"Namespace {', '.join(bad)} is not a namespace name: lower-case letters, digits and "
            "-, or a pattern such as team-*"
        )
    if problems:
        raise ValidationError(problems)
    return {
        "environments": envs,
        "tiers": tier_list,
        "clusters": cluster_list,
        "cluster_selector": selector,
        "namespaces": ns_list,
    }


def grant_access(
    *,
    role: Role,
    team: Team | None = None,
    person: Person | None = None,
    actor: Actor = None,
    reason: str = "",
    source: str = GrantSource.STANDING,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    covers: list[str] | None = None,
    **scope: Any,
) -> Grant:
    """A team or person gets a role over a scope; the clusters it reaches reconcile.

    `covers`: the environment/tier pairs the approval behind it covered (None: not limited);
    the grant never extends to a cluster elsewhere."""
    if (team is None) == (person is None):
        raise ValidationError("A grant names exactly one team or one person.")
    if team is not None and not team.is_active:
        raise ValidationError(f"Team {team.name} is no longer in the directory.")
    if person is not None and not person.is_active:
        raise ValidationError(f"{person.username} is no longer active in the directory.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry is in the past: pick a moment in the future.")
    with transaction.atomic():
        grant = Grant(
            role=role,
            team=team,
            person=person,
            created_by=account_of(actor),
            reason=reason,
            source=source,
            starts_at=starts_at,
            expires_at=expires_at,
            covers=None if covers is None else sorted(set(covers)),
            **clean_scope(**scope),
        )
        grant.full_clean()
        grant.save()
        audit.record(
            "grant.created", actor=actor, obj=grant, after=grant_facts(grant), reason=reason
        )
        transaction.on_commit(lambda: reconcile_for_grants([grant.pk]))
    return grant


def revoke_grant(
    grant: Grant,
    *,
    actor: Actor = None,
    reason: str = "",
    action: str = "grant.revoked",
) -> Grant:
    """End a grant now; its bindings leave every cluster at the reconcile queued now.

    Revoking twice is harmless: the second finds it revoked and changes nothing.
    """
    with transaction.atomic():
        locked = Grant.objects.select_for_update(of=("self",)).select_related(
            "role", "team", "person"
        )
        grant = locked.get(pk=grant.pk)
        if grant.revoked_at is not None:
            return grant
        grant.revoked_at = timezone.now()
        grant.revoked_by = account_of(actor)
        grant.revoke_reason = reason
        grant.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        audit.record(action, actor=actor, obj=grant, before=grant_facts(grant), reason=reason)
        transaction.on_commit(lambda: reconcile_for_grants([grant.pk]))
    return grant


def expire_grants(now: datetime | None = None) -> list[int]:
    """Close every grant whose time is up (also after downtime); returns their ids.

    The compiler already ignores an expired grant, so access ends at the next reconcile even
    without this sweep; the sweep records the expiry and reconciles at once.
    """
    now = now or timezone.now()
    due = Grant.objects.filter(revoked_at__isnull=True, expires_at__lte=now).values_list(
        "pk", flat=True
    )
    expired = []
    for pk in list(due[:5000]):
        with transaction.atomic():
            grant = (
                Grant.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("role", "team", "person")
                .filter(pk=pk, revoked_at__isnull=True)
                .first()
            )
            if grant is None:
                continue  # another sweep has it, or it was revoked meanwhile
            grant.revoked_at = grant.expires_at
            grant.revoke_reason = "expired"
            grant.save(update_fields=["revoked_at", "revoke_reason"])
            audit.record("grant.expired", obj=grant, before=grant_facts(grant), reason="expired")
            _after_expiry(grant)
            expired.append(grant.pk)
    if expired:
        transaction.on_commit(lambda: reconcile_for_grants(expired))
    return expired


def _after_expiry(grant: Grant) -> None:
    """The request behind an expired grant is expired too (and its requester told)."""
    req = AccessRequest.objects.select_for_update().filter(grant=grant).first()
    if req is None or req.state != RequestState.ACTIVE:
        return
    req.state = RequestState.EXPIRED
    req.ended_at = grant.expires_at
    req.save(update_fields=["state", "ended_at"])
    audit.record("request.expired", obj=req, after={"state": req.state}, reason="expired")
    notify.later("ended", req.pk)


# --- the role catalogue -----------------------------------------------------------------------


def clean_rules(rules: Any) -> list[dict[str, list[str]]]:
    """Kubernetes PolicyRules, checked: each names its verbs and resources or URLs."""
    if not isinstance(rules, list):
        raise ValidationError("Rules are a list of rules (apiGroups, resources, verbs).")
    cleaned = []
    for i, rule in enumerate(rules, 1):
        if not isinstance(rule, Mapping):
            raise ValidationError(f"Rule {i} is not a mapping of apiGroups, resources and verbs.")
        unknown = sorted(set(rule) - set(RULE_FIELDS))
        if unknown:
            raise ValidationError(
                f"Rule {i} has unknown field {', '.join(unknown)}: use {', '.join(RULE_FIELDS)}"
            )
        out: dict[str, list[str]] = {}
        for name in RULE_FIELDS:
            values = rule.get(name) or []
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValidationError(f"Rule {i}: {name} is a list of strings.")
            if values:
                out[name] = sorted({v.strip() for v in values if v.strip()})
        if not out.get("verbs"):
            raise ValidationError(f"Rule {i} names no verbs (get, list, watch, create, ...).")
        if not out.get("resources") and not out.get("nonResourceURLs"):
            raise ValidationError(f"Rule {i} names neither resources nor nonResourceURLs.")
        if out.get("resources") and "apiGroups" not in out:
            raise ValidationError(
                f'Rule {i} names resources but no apiGroups: write apiGroups: [""] for the core '
                "group"
            )
        cleaned.append(out)
    return cleaned


def definition_facts(definition: RoleDefinition) -> dict[str, Any]:
    return {
        "role": definition.role.name,
        "environment": definition.environment,
        "tier": definition.tier,
        "cluster_role": definition.cluster_role,
        "rules": definition.rules,
        "scope": definition.scope,
        "namespaces": definition.namespaces,
        "allowed": definition.allowed,
    }


def clean_definition(
    *,
    cluster_role: str = "",
    rules: Any = None,
    scope: str = RoleScope.NAMESPACES,
    namespaces: Iterable[str] = (),
    allowed: bool = True,
) -> dict[str, Any]:
    """What a role becomes somewhere, checked."""
    cluster_role = cluster_role.strip()
    cleaned_rules = clean_rules(rules or [])
    if scope not in RoleScope.values:
        raise ValidationError(f"Scope {scope!r}: use {' or '.join(RoleScope.values)}.")
    if allowed and not cluster_role and not cleaned_rules:
        raise ValidationError(
            "Name a ClusterRole (view, edit, admin, cluster-admin, ...) or write the rules "
            "Warden should manage, or mark the role as not available here."
        )
    if cluster_role and cleaned_rules:
        raise ValidationError("Either a ClusterRole or rules, not both.")
    if cluster_role and not _RBAC_NAME.match(cluster_role):
        raise ValidationError(f"{cluster_role!r} is not a ClusterRole name.")
    ns = clean_scope(namespaces=namespaces)["namespaces"]
    return {
        "cluster_role": cluster_role,
        "rules": cleaned_rules,
        "scope": scope,
        "namespaces": ns,
        "allowed": allowed,
    }


def set_role_definition(
    role: Role,
    *,
    environment: str = "",
    tier: str = "",
    actor: Actor = None,
    reason: str = "",
    **fields: Any,
) -> RoleDefinition:
    """Define (or redefine) what `role` is where environment/tier match ("" = any)."""
    if environment and environment not in Environment.values:
        raise ValidationError(f"Unknown environment {environment!r}.")
    if tier and tier not in Tier.values:
        raise ValidationError(f"Unknown tier {tier!r}.")
    values = clean_definition(**fields)
    with transaction.atomic():
        definition = (
            RoleDefinition.objects.select_for_update()
            .filter(role=role, environment=environment, tier=tier)
            .first()
        )
        before = definition_facts(definition) if definition else None
        if definition is None:
            definition = RoleDefinition(role=role, environment=environment, tier=tier)
        for name, value in values.items():
            setattr(definition, name, value)
        definition.save()
        after = definition_facts(definition)
        if before != after:
            audit.record(
                "role.defined",
                actor=actor,
                obj=role,
                before=before,
                after=after,
                reason=reason,
            )
            transaction.on_commit(lambda: reconcile_for_role(role.pk))
    return definition


def remove_role_definition(
    definition: RoleDefinition, *, actor: Actor = None, reason: str = ""
) -> None:
    with transaction.atomic():
        role = definition.role
        audit.record(
            "role.definition_removed",
            actor=actor,
            obj=role,
            before=definition_facts(definition),
            reason=reason,
        )
        definition.delete()
        transaction.on_commit(lambda: reconcile_for_role(role.pk))


def reconcile_for_grants(grant_ids: list[int]) -> None:
    fleet().reconcile_for_grants(grant_ids)


def reconcile_for_role(role_id: int) -> None:
    """A role changed: every cluster one of its live grants reaches."""
    ids = Grant.objects.filter(role_id=role_id, revoked_at__isnull=True).values_list(
        "pk", flat=True
    )
    reconcile_for_grants(list(ids))
