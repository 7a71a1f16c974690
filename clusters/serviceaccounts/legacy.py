"""Legacy (long-lived, Secret-held) service-account tokens: found, reported, migrated, deleted.

Warden changes nothing it does not own on its own: migrating a legacy token's ServiceAccount
to managed rotation and deleting the legacy Secret are explicit, audited operator actions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import audit
from clusters import k8s, services
from clusters.choices import (
    AccountState,
    LegacyTokenState,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL
from clusters.k8s import KubeError
from clusters.models import (
    Cluster,
    LegacyToken,
    ManagedServiceAccount,
)
from clusters.serviceaccounts.declare import (
    AccountInput,
    declare_service_account,
    validate_account_input,
)
from clusters.serviceaccounts.delivery import parse_moment
from core.types import Actor

logger = logging.getLogger(__name__)


BOUND_SECRET_TYPE = "warden.io/token-binding"  # noqa: S105 - a type name, not a secret
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a type name


LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a type name
LEGACY_LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"


LEGACY_LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"


def scan_legacy_tokens(cluster_id: int) -> int:
    """Record the long-lived token Secrets on one cluster; returns how many it holds. Report
    only: nothing on the cluster is changed."""
    cluster = Cluster.objects.get(pk=cluster_id)
    client = k8s.client_for(services.endpoint_for(cluster))
    found = list(client.list("Secret", field_selector=f"type={LEGACY_TOKEN_TYPE}"))
    now = timezone.now()
    managed = {
        (a.namespace, a.name): a
        for a in ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE).select_related(
            "owner_team"
        )
    }
    seen: list[str] = []
    with transaction.atomic():
        for secret in found:
            meta = secret.get("metadata") or {}
            uid = str(meta.get("uid") or "")
            seen.append(uid)
            namespace = str(meta.get("namespace") or "")
            sa_name = str((meta.get("annotations") or {}).get(SA_NAME_ANNOTATION) or "")
            LegacyToken.objects.update_or_create(
                cluster=cluster,
                uid=uid,
                defaults={
                    "namespace": namespace,
                    "name": str(meta.get("name") or ""),
                    "service_account": sa_name,
                    "created_in_cluster": parse_moment(str(meta.get("creationTimestamp") or "")),
                    "last_used": str((meta.get("labels") or {}).get(LEGACY_LAST_USED_LABEL, "")),
                    "owner": _owner_of(meta, managed.get((namespace, sa_name))),
                    "last_seen_at": now,
                },
            )
        LegacyToken.objects.filter(cluster=cluster, state=LegacyTokenState.FOUND).exclude(
            uid__in=seen
        ).update(state=LegacyTokenState.GONE)
    return len(found)


def _owner_of(meta: Mapping[str, Any], account: ManagedServiceAccount | None) -> str:
    if account is not None:
        return f"team {account.owner_team.name} (its account is managed by Warden)"
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    for source in (labels, annotations):
        for key in ("owner", "team", "app.kubernetes.io/managed-by", "app.kubernetes.io/name"):
            if source.get(key):
                return f"{key}={source[key]}"
    return ""


def migrate_legacy_token(
    legacy: LegacyToken, data: AccountInput, *, actor: Actor, reason: str
) -> ManagedServiceAccount:
    """Put the legacy token's ServiceAccount under managed rotation (an operator's decision).

    The ServiceAccount is not Warden's, so taking it over is explicit: Warden adds only its
    managed-by label and annotations (everything else on it stays), audited with the reason.
    The legacy Secret is left alone: consumers move to the delivered token first, then an
    operator deletes it with delete_legacy_token().
    """
    if legacy.state != LegacyTokenState.FOUND:
        raise ValidationError("Only a token that is still found on its cluster can be migrated.")
    if not reason.strip():
        raise ValidationError("Say why: taking over a ServiceAccount is recorded in the audit.")
    if (data.namespace, data.name) != (legacy.namespace, legacy.service_account):
        raise ValidationError("The managed account must be the legacy token's ServiceAccount.")
    validate_account_input(data)
    with transaction.atomic():
        # The account goes through the approval policies like any other declaration; the
        # ServiceAccount is taken over only once it is approved (at once, or later).
        account = declare_service_account(data, actor=actor, adopted=True, reason=reason)
        adopted = False
        if account.state == AccountState.ACTIVE:
            client = k8s.client_for(services.endpoint_for(legacy.cluster))
            adopted = _adopt(client, legacy)
            if not adopted:
                account.adopted = False
                account.save(update_fields=["adopted"])
        legacy.state = LegacyTokenState.MIGRATED
        legacy.migrated_to = account
        legacy.save(update_fields=["state", "migrated_to"])
        audit.record(
            "legacytoken.migrated",
            actor=actor,
            obj=legacy,
            after={
                "account": str(account),
                "adopted_service_account": adopted,
                "waiting_for_approval": account.state == AccountState.PENDING,
            },
            reason=reason,
        )
    return account


def adopt_migrated(account_id: int) -> bool:
    """Take over the legacy ServiceAccount of an account approved after its migration was
    asked for; False when there is nothing (left) to take over."""
    account = ManagedServiceAccount.objects.filter(
        pk=account_id, state=AccountState.ACTIVE, adopted=True
    ).first()
    found = LegacyToken.objects.select_related("cluster").filter(migrated_to_id=account_id).first()
    if account is None or found is None:
        return False
    client = k8s.client_for(services.endpoint_for(found.cluster))
    try:
        return _adopt(client, found)
    except ValidationError as exc:
        logger.warning("taking over %s for %s failed: %s", found, account, exc)
        account.last_error = f"taking over the legacy ServiceAccount failed: {exc}"[:2000]
        account.save(update_fields=["last_error"])
        return False


def _adopt(client: k8s.KubeClient, legacy: LegacyToken) -> bool:
    """Mark the existing ServiceAccount as Warden's; False when there is none to adopt."""
    try:
        current = client.get("ServiceAccount", legacy.service_account, legacy.namespace)
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise ValidationError(f"{legacy.cluster.name} answered: {exc}") from exc
    labels = (current.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) not in (None, MANAGED_BY):
        raise ValidationError(
            f"ServiceAccount {legacy.namespace}/{legacy.service_account} is managed by "
            f"{labels[MANAGED_BY_LABEL]!r}; Warden will not take it over."
        )
    meta = dict(current.get("metadata") or {})
    meta["labels"] = {**labels, MANAGED_BY_LABEL: MANAGED_BY}
    current["metadata"] = meta
    try:
        client.replace(current)  # carries the resourceVersion read: a concurrent edit -> 409
    except KubeError as exc:
        raise ValidationError(f"Taking over the ServiceAccount failed: {exc}") from exc
    return True


def delete_legacy_token(legacy: LegacyToken, *, actor: Actor, reason: str) -> None:
    """Delete a legacy token Secret (revoking its token): an explicit, audited operator action,
    of exactly the Secret that was reported (uid precondition)."""
    if not reason.strip():
        raise ValidationError("Say why: deleting a token Secret is recorded in the audit.")
    if legacy.state not in (LegacyTokenState.FOUND, LegacyTokenState.MIGRATED):
        raise ValidationError("This token is no longer on its cluster.")
    client = k8s.client_for(services.endpoint_for(legacy.cluster))
    try:
        client.delete("Secret", legacy.name, legacy.namespace, uid=legacy.uid)
    except KubeError as exc:
        if exc.status not in (404, 409):
            raise ValidationError(f"{legacy.cluster.name} answered: {exc}") from exc
    with transaction.atomic():
        before = {"state": legacy.state}
        legacy.state = LegacyTokenState.DELETED
        legacy.save(update_fields=["state"])
        audit.record(
            "legacytoken.deleted",
            actor=actor,
            obj=legacy,
            before=before,
            after={"state": legacy.state, "service_account": legacy.service_account},
            reason=reason,
        )
