"""Declaring managed service accounts, where their tokens go, and asking for a rotation.

State changes the pages (and a later REST API) call; each is one transaction with its audit event,
and queues the reconciles and rotations it implies once it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import audit
from access.models import Role, Team
from clusters.choices import (
    AccountState,
    ClusterState,
    DeliveryKind,
    ReconcileTrigger,
)
from clusters.models import (
    Cluster,
    DeliveryTarget,
    ManagedServiceAccount,
)

logger = logging.getLogger(__name__)


SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
# The shortest token the API server issues (TokenRequest refuses less than 10 minutes).
MIN_LIFETIME = timedelta(minutes=10)


@dataclass
class AccountInput:
    """What a person declares about a service account (the form and a future API fill it)."""

    name: str
    namespace: str
    owner_team: Team
    roles: list[Role] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    cluster_selector: dict[str, str] = field(default_factory=dict)
    rotation_period: timedelta = timedelta(days=30)
    grace_period: timedelta = timedelta(days=2)
    token_lifetime: timedelta = timedelta(days=35)
    show_to_owner: bool = True
    description: str = ""


def snapshot(account: ManagedServiceAccount) -> dict[str, Any]:
    """The declared facts of an account, for audit before/after (no secret in it)."""
    return {
        "name": account.name,
        "namespace": account.namespace,
        "owner_team": account.owner_team.name if account.owner_team_id else "",
        "roles": sorted(role.name for role in account.roles.all()) if account.pk else [],
        "namespaces": list(account.namespaces or []),
        "clusters": list(account.clusters or []),
        "cluster_selector": dict(account.cluster_selector or {}),
        "rotation_period_s": int(account.rotation_period.total_seconds()),
        "grace_period_s": int(account.grace_period.total_seconds()),
        "lifetime_s": int(account.token_lifetime.total_seconds()),
        "show_to_owner": account.show_to_owner,
        "state": account.state,
    }


def validate_account_input(
    data: AccountInput, account: ManagedServiceAccount | None = None
) -> None:
    """Refuse what cannot be declared, with every reason at once."""
    problems = []
    if not data.clusters and not data.cluster_selector:
        problems.append(
            "Name the clusters, or give a label selector: an account never reaches "
            "the whole fleet by omission."
        )
    # A name already declared may belong to a cluster retired since; a new one must exist.
    known = set(account.clusters or []) if account is not None else set()
    live = Cluster.objects.exclude(state=ClusterState.RETIRED).filter(name__in=data.clusters)
    unknown = sorted(set(data.clusters) - known - set(live.values_list("name", flat=True)))
    if unknown:
        problems.append(
            f"No live cluster is called {', '.join(unknown)}: check the names on the clusters page."
        )
    if data.rotation_period < MIN_LIFETIME:
        problems.append("The rotation period must be at least 10 minutes.")
    if data.grace_period < timedelta(0):
        problems.append("The grace period cannot be negative.")
    if data.token_lifetime < MIN_LIFETIME:
        problems.append("The token lifetime must be at least 10 minutes (the API server's floor).")
    if data.token_lifetime < data.rotation_period + data.grace_period:
        problems.append(
            "The token lifetime must cover the rotation period plus the grace period, or tokens "
            "would expire before their successor is delivered."
        )
    if problems:
        raise ValidationError(problems)


def declare_service_account(
    data: AccountInput,
    *,
    actor: Any = None,
    account: ManagedServiceAccount | None = None,
    adopted: bool = False,
    reason: str = "",
) -> ManagedServiceAccount:
    """Create (or change) a managed service account; its clusters reconcile, tokens follow."""
    validate_account_input(data, account)
    with transaction.atomic():
        creating = account is None
        if account is None:
            account = ManagedServiceAccount(created_by=actor if _is_user(actor) else None)
            before = None
        else:
            account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
            if account.state != AccountState.ACTIVE:
                raise ValidationError("A retired service account cannot be changed.")
            if (account.name, account.namespace) != (data.name, data.namespace):
                raise ValidationError(
                    "Name and namespace cannot change (the ServiceAccount would be a new one); "
                    "declare a new account and retire this one."
                )
            before = snapshot(account)
        reached_before = set(_reached_ids(account)) if not creating else set()
        account.name, account.namespace = data.name, data.namespace
        account.description = data.description
        account.owner_team = data.owner_team
        account.namespaces = list(data.namespaces)
        account.clusters = list(data.clusters)
        account.cluster_selector = dict(data.cluster_selector)
        account.rotation_period, account.grace_period = data.rotation_period, data.grace_period
        account.token_lifetime = data.token_lifetime
        account.show_to_owner = data.show_to_owner
        account.adopted = account.adopted or adopted
        if creating:
            # The first token is issued as soon as the ServiceAccount exists.
            account.next_rotation_at = timezone.now()
        try:
            account.full_clean(exclude=["owner_team", "created_by"])
        except ValidationError as exc:
            if "__all__" in exc.message_dict:
                raise ValidationError(
                    f"An active service account {data.namespace}/{data.name} already exists."
                ) from None
            raise
        account.save()
        account.roles.set(data.roles)
        after = snapshot(account)
        audit.record(
            "serviceaccount.declared" if creating else "serviceaccount.changed",
            actor=actor,
            obj=account,
            before=before,
            after=after,
            reason=reason,
        )
        reached = set(_reached_ids(account)) | reached_before
        account_id = account.pk
        transaction.on_commit(lambda: _queue_reconciles(reached))
        if creating:
            transaction.on_commit(lambda: queue_rotation(account_id))
    return account


def retire_service_account(
    account: ManagedServiceAccount, *, actor: Any = None, reason: str = ""
) -> ManagedServiceAccount:
    """Retire an account: its tokens are revoked and its ServiceAccount leaves every cluster."""
    with transaction.atomic():
        account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
        if account.state == AccountState.RETIRED:
            return account
        before = snapshot(account)
        reached = set(_reached_ids(account))
        account.state = AccountState.RETIRED
        account.retired_at = timezone.now()
        account.save(update_fields=["state", "retired_at", "updated_at"])
        audit.record(
            "serviceaccount.retired",
            actor=actor,
            obj=account,
            before=before,
            after=snapshot(account),
            reason=reason,
        )
        account_id = account.pk
        # Revoke first (delete the bound Secrets), then the reconciles remove the account.
        transaction.on_commit(lambda: queue_rotation(account_id))
        transaction.on_commit(lambda: _queue_reconciles(reached))
    return account


def add_delivery_target(
    account: ManagedServiceAccount,
    *,
    kind: str,
    actor: Any = None,
    cluster: Cluster | None = None,
    namespace: str = "",
    secret_name: str = "",
    url: str = "",
    ca_bundle: str = "",
    signing_key: str = "",
) -> DeliveryTarget:
    """Add where new tokens go. The next rotation delivers to it ("rotate now" to get one now)."""
    target = DeliveryTarget(account=account, kind=kind)
    if kind == DeliveryKind.SECRET:
        if cluster is None or not namespace or not secret_name:
            raise ValidationError("A Secret target needs a cluster, a namespace and a name.")
        target.cluster, target.namespace, target.secret_name = cluster, namespace, secret_name
    elif kind == DeliveryKind.WEBHOOK:
        if not url.startswith("https://"):
            raise ValidationError("A webhook URL must start with https:// (tokens travel in it).")
        if len(signing_key) < 32:
            raise ValidationError(
                "The signing key must be at least 32 characters (HMAC-SHA256 shared with the "
                "receiver)."
            )
        target.url, target.ca_bundle, target.signing_key = url, ca_bundle, signing_key
    else:
        raise ValidationError(f"Unknown delivery target kind {kind!r}.")
    with transaction.atomic():
        target.full_clean(exclude=["account", "cluster"])
        target.save()
        audit.record(
            "serviceaccount.target_added",
            actor=actor,
            obj=account,
            after={"target": str(target), "kind": kind},
        )
    return target


def remove_delivery_target(target: DeliveryTarget, *, actor: Any = None) -> None:
    """Stop delivering to a target (what it already holds stays where it is)."""
    with transaction.atomic():
        account = ManagedServiceAccount.objects.select_for_update().get(pk=target.account_id)
        others = account.targets.exclude(pk=target.pk).exists()
        if not others and not account.show_to_owner:
            raise ValidationError(
                "This is the only place its tokens go; add another target, or have tokens shown "
                "to the owner, first."
            )
        description = str(target)
        target.delete()
        audit.record(
            "serviceaccount.target_removed",
            actor=actor,
            obj=account,
            before={"target": description},
        )


def request_rotation(
    account: ManagedServiceAccount, *, actor: Any = None, reason: str = ""
) -> ManagedServiceAccount:
    """Ask for a new generation now. Asking twice before it happens still makes one."""
    with transaction.atomic():
        account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
        if account.state != AccountState.ACTIVE:
            raise ValidationError("A retired service account has no tokens to rotate.")
        if account.rotation_requested_at is None:
            account.rotation_requested_at = timezone.now()
            account.rotation_requested_by = actor if _is_user(actor) else None
            account.save(update_fields=["rotation_requested_at", "rotation_requested_by"])
        audit.record("serviceaccount.rotation_requested", actor=actor, obj=account, reason=reason)
        account_id = account.pk
        transaction.on_commit(lambda: queue_rotation(account_id))
    return account


def queue_rotation(account_id: int) -> None:
    from clusters.tasks import rotate_service_account_task

    rotate_service_account_task.delay(account_id)


def _queue_reconciles(cluster_ids: Iterable[int]) -> None:
    from clusters.tasks import reconcile_cluster_task

    for cluster_id in sorted(cluster_ids):
        reconcile_cluster_task.delay(cluster_id, ReconcileTrigger.CHANGE)


def _is_user(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False))


def reached_clusters(account: ManagedServiceAccount) -> list[Cluster]:
    """The live clusters the account lives on, by name."""
    spec = account.spec(role_names=())
    live = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
    if spec.clusters:
        live = live.filter(name__in=spec.clusters)
    return [cluster for cluster in live if spec.reaches(cluster.spec())]


def _reached_ids(account: ManagedServiceAccount) -> list[int]:
    return [cluster.pk for cluster in reached_clusters(account)]
