"""Declaring managed service accounts, where their tokens go, and asking for a rotation.

State changes the pages (and a later REST API) call; each is one transaction with its audit event,
and queues the reconciles and rotations it implies once it commits.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from access import audit, notify
from access.choices import Environment, RequestState, Tier
from access.models import Role, Team
from access.permissions import person_of
from access.services import requests
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
from clusters.permissions import check_may_change, check_may_declare
from core import outbound, queue
from core.types import Actor, account_of

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


def protected_namespaces_named(namespace: str, namespaces: Iterable[str]) -> list[str]:
    """The protected namespaces (SERVICE_ACCOUNT_PROTECTED_NAMESPACES) an account would live in
    or reach: its own namespace, and every name or pattern its roles apply in."""
    protected = sorted(set(settings.SERVICE_ACCOUNT_PROTECTED_NAMESPACES))
    named = [namespace, *namespaces]
    return [p for p in protected if any(fnmatch.fnmatchcase(p, n) for n in named)]


def validate_account_input(
    data: AccountInput, account: ManagedServiceAccount | None = None
) -> None:
    """Refuse what cannot be declared, with every reason at once."""
    problems = []
    protected = protected_namespaces_named(data.namespace, data.namespaces)
    if protected:
        problems.append(
            f"{', '.join(protected)} belong to the cluster or to Warden: a service account "
            "cannot live or be given roles there (SERVICE_ACCOUNT_PROTECTED_NAMESPACES)."
        )
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
            f"No cluster is called {', '.join(unknown)}: name registered clusters (an account "
            "never reaches a cluster that joins later under a name given in advance)."
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
    actor: Actor = None,
    account: ManagedServiceAccount | None = None,
    adopted: bool = False,
    reason: str = "",
) -> ManagedServiceAccount:
    """Create (or change) a managed service account; its clusters reconcile, tokens follow.

    A person's declaration, and any later change that widens it (a role added, more clusters,
    namespaces or another owner team), goes through the approval policies exactly as their own
    request for the same role and reach would: one access request per role, decided by the
    policy's approvers. Until all are approved a new account is pending (nothing on any cluster,
    no token) and a change waits beside the account as it is. Declarations by Warden itself
    (no person acting: access as code run by the deployment, the tests) apply at once.
    """
    validate_account_input(data, account)
    person_acts = is_user(actor)
    if person_acts:
        check_may_declare(actor, data.owner_team, data.roles)
        if account is not None:
            check_may_declare(actor, account.owner_team, account.roles.all())
    with transaction.atomic():
        if account is not None:
            account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
            _check_changeable(account, data)
        to_approve = _roles_to_approve(account, data) if person_acts else []
        if to_approve:
            return _propose(
                data, to_approve, actor=actor, account=account, adopted=adopted, reason=reason
            )
        if account is not None:
            # A declaration is decided as a whole: this one replaces any still waiting.
            _drop_waiting(account, actor, "replaced by a change that needs no approval")
        return _save(data, actor=actor, account=account, adopted=adopted, reason=reason)


def _drop_waiting(account: ManagedServiceAccount, actor: Actor, why: str) -> None:
    if not account.approval_requests.exists() and account.pending_change is None:
        return
    _withdraw(account, actor, why)
    if account.pending_change is not None:
        proposed = account.pending_change
        account.pending_change = None
        account.save(update_fields=["pending_change", "updated_at"])
        audit.record(
            "serviceaccount.change_withdrawn", actor=actor, obj=account, before=proposed, reason=why
        )


def _check_changeable(account: ManagedServiceAccount, data: AccountInput) -> None:
    if account.state == AccountState.RETIRED:
        raise ValidationError("A retired service account cannot be changed.")
    if (account.name, account.namespace) != (data.name, data.namespace):
        raise ValidationError(
            "Name and namespace cannot change (the ServiceAccount would be a new one); "
            "declare a new account and retire this one."
        )


def _save(
    data: AccountInput,
    *,
    actor: Actor,
    account: ManagedServiceAccount | None,
    adopted: bool,
    reason: str,
    state: str = AccountState.ACTIVE,
    covers: dict[str, list[str]] | None = None,
) -> ManagedServiceAccount:
    """Write the declaration (inside the caller's transaction); an active account's clusters
    reconcile, and a new one gets its first token."""
    creating = account is None
    if account is None:
        account = ManagedServiceAccount(created_by=account_of(actor))
        # A person's account reaches only what approvals covered (nothing yet).
        account.approved_covers = {} if is_user(actor) else None
        before = None
    else:
        before = snapshot(account)
    activating = account.state == AccountState.PENDING and state == AccountState.ACTIVE
    reached_before = set(_reached_ids(account)) if account.state == AccountState.ACTIVE else set()
    account.state = state
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
    if covers is not None:
        account.approved_covers = covers
    if creating or activating:
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
    if creating:
        action = "serviceaccount.declared"
    elif activating:
        action = "serviceaccount.approved"
    else:
        action = "serviceaccount.changed"
    audit.record(
        action, actor=actor, obj=account, before=before, after=snapshot(account), reason=reason
    )
    if account.state == AccountState.ACTIVE:
        reached = set(_reached_ids(account)) | reached_before
        account_id = account.pk
        transaction.on_commit(lambda: _queue_reconciles(reached))
        if creating or activating:
            transaction.on_commit(lambda: queue_rotation(account_id))
    return account


# --- approval -------------------------------------------------------------------------------


def _widens_reach(account: ManagedServiceAccount, data: AccountInput) -> bool:
    """Whether the change lets the account's roles reach more than they do now (or for longer:
    a longer token lifetime is checked against the policy again)."""
    if data.owner_team.pk != account.owner_team_id:
        return True  # other people would hold its tokens
    if data.token_lifetime > account.token_lifetime:
        return True
    old_names, new_names = set(account.clusters or ()), set(data.clusters)
    if new_names - old_names or (old_names and not new_names):
        return True
    old_selector = set((account.cluster_selector or {}).items())
    if not old_selector <= set(data.cluster_selector.items()):
        return True  # a selector with fewer conditions matches more clusters
    old_ns, new_ns = set(account.namespaces or ()), set(data.namespaces)
    if old_ns == new_ns:
        return False
    if not old_ns or not new_ns:
        return True  # "its own namespace / cluster-wide" and named namespaces differ
    return not all(any(fnmatch.fnmatchcase(n, o) for o in old_ns) for n in new_ns)


def _roles_to_approve(account: ManagedServiceAccount | None, data: AccountInput) -> list[Role]:
    """The roles a person's declaration asks approval for: all of a new (or still pending)
    account's, all when the reach widens, otherwise the roles added."""
    if account is None or account.state == AccountState.PENDING:
        return list(data.roles)
    if _widens_reach(account, data):
        return list(data.roles)
    held = set(account.roles.values_list("pk", flat=True))
    return [role for role in data.roles if role.pk not in held]


def _propose(
    data: AccountInput,
    roles: list[Role],
    *,
    actor: Actor,
    account: ManagedServiceAccount | None,
    adopted: bool,
    reason: str,
) -> ManagedServiceAccount:
    """File one access request per role with the policy service; apply when all are approved."""
    person = person_of(actor)
    if person is None:
        raise ValidationError(
            "A service account's access is approved like a person's: declare it while logged "
            "in as a person from the directory."
        )
    if account is None or account.state == AccountState.PENDING:
        if account is not None:
            _withdraw(account, actor, "replaced by a new declaration")
        account = _save(
            data,
            actor=actor,
            account=account,
            adopted=adopted,
            reason=reason,
            state=AccountState.PENDING,
        )
    else:
        _withdraw(account, actor, "replaced by a newer change")
        account.pending_change = _change_doc(data, adopted)
        account.save(update_fields=["pending_change", "updated_at"])
        audit.record(
            "serviceaccount.change_proposed",
            actor=actor,
            obj=account,
            before=snapshot(account),
            after=account.pending_change,
            reason=reason,
        )
    label = str(account)
    justification = reason.strip() or data.description.strip()
    if len(justification) < 10:
        justification = f"Service account {label}, declared by {person.username}: {justification}"
    filed = []
    for role in roles:
        try:
            filed.append(
                requests.submit_request(
                    requester=person,
                    role=role,
                    justification=justification,
                    actor=actor,
                    service_account=label,
                    # Each token is access for its lifetime: the policy's longest duration
                    # bounds it, as it bounds a person's request.
                    duration=data.token_lifetime,
                    clusters=data.clusters,
                    namespaces=data.namespaces,
                )
            )
        except ValidationError as exc:
            raise ValidationError(
                [f"{role.name} for {label}: {message}" for message in exc.messages]
            ) from None
    account.approval_requests.set(filed)
    if all(req.state == RequestState.ACTIVE for req in filed):
        return apply_approved(account, actor)  # the policy approves at once (auto-approve)
    return account


def _change_doc(data: AccountInput, adopted: bool) -> dict[str, Any]:
    return {
        "name": data.name,
        "namespace": data.namespace,
        "description": data.description,
        "owner_team": data.owner_team.pk,
        "roles": sorted(role.pk for role in data.roles),
        "role_names": sorted(role.name for role in data.roles),
        "namespaces": list(data.namespaces),
        "clusters": list(data.clusters),
        "cluster_selector": dict(data.cluster_selector),
        "rotation_period_s": int(data.rotation_period.total_seconds()),
        "grace_period_s": int(data.grace_period.total_seconds()),
        "lifetime_s": int(data.token_lifetime.total_seconds()),
        "show_to_owner": data.show_to_owner,
        "adopted": adopted,
    }


def _input_of(doc: dict[str, Any]) -> AccountInput:
    return AccountInput(
        name=doc["name"],
        namespace=doc["namespace"],
        description=doc["description"],
        owner_team=Team.objects.get(pk=doc["owner_team"]),
        roles=list(Role.objects.filter(pk__in=doc["roles"])),
        namespaces=list(doc["namespaces"]),
        clusters=list(doc["clusters"]),
        cluster_selector=dict(doc["cluster_selector"]),
        rotation_period=timedelta(seconds=doc["rotation_period_s"]),
        grace_period=timedelta(seconds=doc["grace_period_s"]),
        token_lifetime=timedelta(seconds=doc["lifetime_s"]),
        show_to_owner=doc["show_to_owner"],
    )


def apply_approved(account: ManagedServiceAccount, actor: Actor) -> ManagedServiceAccount:
    """Every request of the account's proposal is approved: the account (or its change) is in
    force, its roles covering the environments/tiers their approvals covered."""
    filed = list(account.approval_requests.select_related("role"))
    if any(req.state != RequestState.ACTIVE for req in filed):
        return account  # more approvals to come
    if account.state == AccountState.PENDING:
        data, adopted = _current_input(account), account.adopted
    elif account.pending_change is not None:
        data = _input_of(account.pending_change)
        adopted = bool(account.pending_change.get("adopted"))
    else:
        return account
    covers = _covers_after(account, data, filed)
    account.pending_change = None
    account.approval_requests.clear()
    return _save(
        data,
        actor=actor,
        account=account,
        adopted=adopted,
        reason="approved: " + ", ".join(f"request #{req.pk}" for req in filed),
        covers=covers,
    )


def _current_input(account: ManagedServiceAccount) -> AccountInput:
    return AccountInput(
        name=account.name,
        namespace=account.namespace,
        description=account.description,
        owner_team=account.owner_team,
        roles=list(account.roles.all()),
        namespaces=list(account.namespaces or ()),
        clusters=list(account.clusters or ()),
        cluster_selector=dict(account.cluster_selector or {}),
        rotation_period=account.rotation_period,
        grace_period=account.grace_period,
        token_lifetime=account.token_lifetime,
        show_to_owner=account.show_to_owner,
    )


def _covers_after(
    account: ManagedServiceAccount, data: AccountInput, filed: list[Any]
) -> dict[str, list[str]]:
    """Per role, where its approval reaches: the new approvals, else what it had (an account
    Warden declared itself was not limited: its roles keep every place)."""
    everywhere = sorted(f"{e}/{t}" for e in Environment.values for t in Tier.values)
    before = account.approved_covers
    covers = {}
    for role in data.roles:
        approved = [req for req in filed if req.role_id == role.pk]
        if approved:
            covers[role.name] = sorted(approved[-1].covers)
        elif before is None:
            covers[role.name] = everywhere
        else:
            covers[role.name] = list(before.get(role.name, []))
    return covers


def _withdraw(account: ManagedServiceAccount, actor: Actor, why: str) -> None:
    waiting = list(account.approval_requests.all())
    if waiting:
        requests.withdraw_service_account_requests(waiting, reason=why, actor=actor)
    account.approval_requests.clear()


def drop_proposal(account: ManagedServiceAccount, request: Any, actor: Actor) -> None:
    """One request of the account's proposal was denied or cancelled: the proposal is dropped
    (its other requests withdrawn); a new account is retired unused."""
    why = f"request #{request.pk} was {request.get_state_display().lower()}"
    _withdraw(account, actor, why)
    if account.state == AccountState.PENDING:
        before = snapshot(account)
        account.state = AccountState.RETIRED
        account.retired_at = timezone.now()
        account.save(update_fields=["state", "retired_at", "updated_at"])
        audit.record(
            "serviceaccount.denied",
            actor=actor,
            obj=account,
            before=before,
            after=snapshot(account),
            reason=why,
        )
    elif account.pending_change is not None:
        proposed = account.pending_change
        account.pending_change = None
        account.save(update_fields=["pending_change", "updated_at"])
        audit.record(
            "serviceaccount.change_denied", actor=actor, obj=account, before=proposed, reason=why
        )


def retire_service_account(
    account: ManagedServiceAccount, *, actor: Actor = None, reason: str = ""
) -> ManagedServiceAccount:
    """Retire an account: its tokens are revoked and its ServiceAccount leaves every cluster."""
    with transaction.atomic():
        account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
        if account.state == AccountState.RETIRED:
            return account
        before = snapshot(account)
        reached = set(_reached_ids(account)) if account.state == AccountState.ACTIVE else set()
        _withdraw(account, actor, "the service account was retired")
        account.state = AccountState.RETIRED
        account.retired_at = timezone.now()
        account.pending_change = None
        account.save(update_fields=["state", "retired_at", "pending_change", "updated_at"])
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
    actor: Actor = None,
    cluster: Cluster | None = None,
    namespace: str = "",
    secret_name: str = "",
    url: str = "",
    ca_bundle: str = "",
    signing_key: str = "",
) -> DeliveryTarget:
    """Add where new tokens go. The next rotation delivers to it ("rotate now" to get one now).

    A person needs the permission that changing the account takes; the owner team is told."""
    if is_user(actor):
        check_may_change(actor, account)
    target = DeliveryTarget(account=account, kind=kind)
    if kind == DeliveryKind.SECRET:
        if cluster is None or not namespace or not secret_name:
            raise ValidationError("A Secret target needs a cluster, a namespace and a name.")
        target.cluster, target.namespace, target.secret_name = cluster, namespace, secret_name
    elif kind == DeliveryKind.WEBHOOK:
        if not url.startswith("https://"):
            raise ValidationError("A webhook URL must start with https:// (tokens travel in it).")
        outbound.check_webhook_url(url)
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
        _announce_target(account, target, actor)
    return target


def _announce_target(account: ManagedServiceAccount, target: DeliveryTarget, actor: Actor) -> None:
    who = getattr(actor, "username", "") or "Warden"
    link = settings.WARDEN_BASE_URL.rstrip("/") + reverse("sa-detail", args=[account.pk])
    notify.tell_team_later(
        account.owner_team_id,
        f"[Warden] New tokens of service account {account} now also go to {target}",
        f"{who} added a delivery target to service account {account}: {target}.\n"
        "Every new token of the account will be sent there. If you did not expect this, "
        f"remove it and rotate the account: {link}\n",
    )


def remove_delivery_target(target: DeliveryTarget, *, actor: Actor = None) -> None:
    """Stop delivering to a target (what it already holds stays where it is)."""
    if is_user(actor):
        check_may_change(actor, target.account)
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
    account: ManagedServiceAccount, *, actor: Actor = None, reason: str = ""
) -> ManagedServiceAccount:
    """Ask for a new generation now. Asking twice before it happens still makes one.

    A person needs the permission that changing the account takes (a new token goes to every
    target, and is shown to the owner team)."""
    if is_user(actor):
        check_may_change(actor, account)
    with transaction.atomic():
        account = ManagedServiceAccount.objects.select_for_update().get(pk=account.pk)
        if account.state != AccountState.ACTIVE:
            raise ValidationError(
                f"A {account.get_state_display().lower()} service account has no tokens to rotate."
            )
        if account.rotation_requested_at is None:
            account.rotation_requested_at = timezone.now()
            account.rotation_requested_by = account_of(actor)
            account.save(update_fields=["rotation_requested_at", "rotation_requested_by"])
        audit.record("serviceaccount.rotation_requested", actor=actor, obj=account, reason=reason)
        account_id = account.pk
        transaction.on_commit(lambda: queue_rotation(account_id))
    return account


def queue_rotation(account_id: int) -> None:
    queue.send("clusters.tasks.rotate_service_account_task", account_id)


def _queue_reconciles(cluster_ids: Iterable[int]) -> None:
    for cluster_id in sorted(cluster_ids):
        queue.send("clusters.tasks.reconcile_cluster_task", cluster_id, ReconcileTrigger.CHANGE)


def is_user(actor: Actor) -> bool:
    """The actor is a logged-in person (not the system, a task or beat)."""
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
