"""Managed service accounts: declaring them, and issuing, delivering, rotating and revoking tokens.

A rotation of one account is: issue generation N+1 (on every cluster the account reaches, a
Secret Warden owns and a TokenRequest bound to it) -> deliver it to every target -> make it the
active generation, leaving N valid for the grace period -> when that ends, revoke N by deleting
its bound Secrets. Each step is written down (and audited) before the next begins, so a failure
anywhere leaves generation N in force and the next attempt carries on where this one stopped.

Only one worker rotates an account at a time: it holds a lease on the account row (lease_id,
lease_until), claimed with one conditional UPDATE and renewed at every step. A worker that dies
holds nothing: its lease runs out and the next attempt resumes the unfinished generation. Every
write checks the lease is still ours, so a worker that lost it cannot record anything.

Token values exist in memory while they are handed over and, encrypted, in
TokenGeneration.sealed_tokens until every target has them and the owner has seen them (when
asked to be shown). They are never logged, never put in an audit event, never shown twice.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access import audit
from access.models import Role, Team
from clusters import k8s, services
from clusters.choices import (
    AccountState,
    ClusterState,
    DeliveryKind,
    GenerationState,
    LegacyTokenState,
    ReconcileTrigger,
    RotationStatus,
    RotationTrigger,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_ACCOUNT_ANNOTATION
from clusters.k8s import KubeError
from clusters.kubeconfig import KubeconfigEntry, build_kubeconfig
from clusters.models import (
    Cluster,
    DeliveryTarget,
    LegacyToken,
    ManagedServiceAccount,
    RotationRun,
    TokenGeneration,
)
from clusters.webhooks import WebhookError, post_signed

logger = logging.getLogger(__name__)

GENERATION_LABEL = "warden.io/token-generation"
# The type of the per-generation Secret a token is bound to: it holds no data, it only exists.
BOUND_SECRET_TYPE = "warden.io/token-binding"  # noqa: S105 - a type name, not a secret
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a type name
LEGACY_LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
# The shortest token the API server issues (TokenRequest refuses less than 10 minutes).
MIN_LIFETIME = timedelta(minutes=10)
LIVE_GENERATIONS = (GenerationState.PENDING, GenerationState.ACTIVE, GenerationState.GRACE)


class RotationFailed(Exception):
    """A rotation step did not complete; the generation in force is untouched."""


class LeaseLost(Exception):
    """Another worker took this account's rotation over (our lease had run out)."""


class AlreadyShown(Exception):
    """A token was already shown once, or there is none to show."""


# --- the lease ----------------------------------------------------------------------------------


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.SERVICE_ACCOUNT_LEASE_SECONDS)


def claim(account_id: int) -> str | None:
    """Take the account's rotation lease if nobody holds a live one; returns its id or None."""
    lease = uuid.uuid4().hex
    now = timezone.now()
    taken = (
        ManagedServiceAccount.objects.filter(pk=account_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_id=lease, lease_until=now + lease_duration())
    )
    return lease if taken else None


def _hold(account_id: int, lease: str) -> None:
    """Renew our lease, inside the caller's transaction (locking the row until it commits)."""
    renewed = ManagedServiceAccount.objects.filter(pk=account_id, lease_id=lease).update(
        lease_until=timezone.now() + lease_duration()
    )
    if not renewed:
        raise LeaseLost(f"the rotation lease of service account {account_id} was taken over")


def release(account_id: int, lease: str) -> None:
    ManagedServiceAccount.objects.filter(pk=account_id, lease_id=lease).update(
        lease_id="", lease_until=None
    )


# --- declaring ----------------------------------------------------------------------------------


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


def _validate(data: AccountInput) -> None:
    problems = []
    if not data.clusters and not data.cluster_selector:
        problems.append(
            "Name the clusters, or give a label selector: an account never reaches "
            "the whole fleet by omission."
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
    _validate(data)
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


# --- which clusters ------------------------------------------------------------------------------


def reached_clusters(account: ManagedServiceAccount) -> list[Cluster]:
    """The live clusters the account lives on, by name."""
    spec = account.spec(role_names=())
    live = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
    if spec.clusters:
        live = live.filter(name__in=spec.clusters)
    return [cluster for cluster in live if spec.reaches(cluster.spec())]


def _reached_ids(account: ManagedServiceAccount) -> list[int]:
    return [cluster.pk for cluster in reached_clusters(account)]


# --- rotation -----------------------------------------------------------------------------------


@dataclass
class _Attempt:
    """What one rotation attempt did, for its RotationRun."""

    account: ManagedServiceAccount
    lease: str
    started_at: datetime
    started: float
    calls_before: int
    steps: list[str] = field(default_factory=list)
    generation: TokenGeneration | None = None
    trigger: str = ""
    # The account's pending, active and in-grace generations, read once and kept up to date
    # in memory as this attempt changes them (it holds the lease: nobody else does).
    live: list[TokenGeneration] = field(default_factory=list)
    _clusters: list[Cluster] | None = None

    def clusters(self) -> list[Cluster]:
        """The clusters the account reaches, read once per attempt."""
        if self._clusters is None:
            self._clusters = reached_clusters(self.account)
        return self._clusters


def rotate_account(
    account_id: int, *, trigger: str = "", actor: Any = None, force: bool = False
) -> RotationRun | None:
    """Do whatever the account's tokens need now; None when nothing was due or another
    worker holds its rotation (both normal outcomes).

    "Whatever they need": finish a generation left unfinished, start one when due, requested
    or forced, revoke generations whose grace period is over, and, for a retired account,
    revoke everything. Failures are recorded on the returned run (status failed), never lose the
    generation in force, and are retried by the caller (the Celery task) and by beat.
    """
    lease = claim(account_id)
    if lease is None:
        logger.info("service account %s: another worker holds its rotation", account_id)
        return None
    try:
        return _rotate_claimed(account_id, lease, trigger, actor, force)
    finally:
        release(account_id, lease)


def _rotate_claimed(
    account_id: int, lease: str, trigger: str, actor: Any, force: bool
) -> RotationRun | None:
    account = ManagedServiceAccount.objects.select_related("owner_team").get(pk=account_id)
    attempt = _Attempt(
        account=account,
        lease=lease,
        started_at=timezone.now(),
        started=time.monotonic(),
        calls_before=k8s.calls_in_this_thread(),
        trigger=trigger,
    )
    attempt.live = list(account.generations.filter(state__in=LIVE_GENERATIONS))
    try:
        if account.state == AccountState.RETIRED:
            attempt.trigger = RotationTrigger.RETIRE
            if not _revoke_generations(attempt, everything=True):
                return None
            return _finish(attempt, RotationStatus.SUCCEEDED)
        pending = [g for g in attempt.live if g.state == GenerationState.PENDING]
        generation = pending[-1] if pending else None
        if generation is not None:
            attempt.steps.append(f"resumed generation {generation.number}, left unfinished")
        elif force or _due(account, timezone.now()):
            generation = _start_generation(attempt, actor)
        if generation is not None:
            attempt.generation = generation
            attempt.trigger = attempt.trigger or generation.trigger
            _advance(attempt, generation)
        revoked = _revoke_generations(attempt)
        if generation is None and not revoked:
            return None
        return _finish(attempt, RotationStatus.SUCCEEDED)
    except LeaseLost:
        logger.warning(
            "service account %s: lease lost mid-rotation; the new holder goes on", account_id
        )
        return None
    except RotationFailed as exc:
        return _finish(attempt, RotationStatus.FAILED, str(exc))
    except (KubeError, WebhookError) as exc:
        return _finish(attempt, RotationStatus.FAILED, str(exc))


def _due(account: ManagedServiceAccount, now: datetime) -> bool:
    if account.rotation_requested_at is not None:
        return True
    return account.next_rotation_at is not None and account.next_rotation_at <= now


def _start_generation(attempt: _Attempt, actor: Any) -> TokenGeneration:
    account = attempt.account
    if not attempt.clusters():
        raise RotationFailed(
            "The account reaches no live cluster (check its cluster names and selector)."
        )
    # `account` was read after the lease was taken; a request arriving since is satisfied by
    # the generation started here.
    requested_by = actor if _is_user(actor) else account.rotation_requested_by
    with transaction.atomic():
        held = ManagedServiceAccount.objects.filter(pk=account.pk, lease_id=attempt.lease).update(
            lease_until=timezone.now() + lease_duration(),
            rotation_requested_at=None,
            rotation_requested_by=None,
        )
        if not held:
            raise LeaseLost(f"the rotation lease of service account {account.pk} was taken over")
        # The newest generation is live unless every one was revoked; then ask the table.
        newest = max((g.number for g in attempt.live), default=None)
        if newest is None:
            newest = account.generations.aggregate(top=Max("number"))["top"] or 0
        number = newest + 1
        trigger = attempt.trigger
        if not trigger:
            if number == 1:
                trigger = RotationTrigger.DECLARED
            elif account.rotation_requested_at is not None and requested_by is None:
                # Requested by Warden itself: the reconciler had to recreate the ServiceAccount.
                trigger = RotationTrigger.RECREATED
            elif account.rotation_requested_at is not None:
                trigger = RotationTrigger.OPERATOR
            else:
                trigger = RotationTrigger.SCHEDULE
        generation = TokenGeneration.objects.create(
            account=account, number=number, trigger=trigger, requested_by=requested_by
        )
    attempt.live.append(generation)
    attempt.steps.append(f"started generation {number}")
    return generation


def bound_secret_name(account: ManagedServiceAccount, number: int) -> str:
    return f"{account.name}-warden-{number}"


@dataclass
class _Progress:
    """What this attempt did on the clusters and targets, before it is written down."""

    issued: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    delivered: list[DeliveryTarget] = field(default_factory=list)
    undelivered: list[DeliveryTarget] = field(default_factory=list)
    failure: str = ""


def _advance(attempt: _Attempt, generation: TokenGeneration) -> None:
    """Issue what is missing, deliver to every target still without it, and, when all went
    well, put the generation in force; progress is written in one transaction either way."""
    progress = _Progress(tokens=_unseal(generation))
    _issue_missing(attempt, generation, progress)
    if not progress.failure:
        _deliver(attempt, generation, progress)
    _record(attempt, generation, progress, activate=not progress.failure)
    if progress.failure:
        raise RotationFailed(progress.failure)


def _issue(attempt: _Attempt, generation: TokenGeneration) -> None:
    """Only issue (and record) the tokens still missing: what a worker does first."""
    progress = _Progress(tokens=_unseal(generation))
    _issue_missing(attempt, generation, progress)
    _record(attempt, generation, progress, activate=False)
    if progress.failure:
        raise RotationFailed(progress.failure)


def _issue_missing(attempt: _Attempt, generation: TokenGeneration, progress: _Progress) -> None:
    """A token on every reached cluster that has none yet; stops at the first failure (what
    was issued before it is still recorded, so a retry only does the rest)."""
    for cluster in attempt.clusters():
        if cluster.name in generation.issued:
            continue
        try:
            record, token = _issue_on(cluster, attempt.account, generation)
        except KubeError as exc:
            progress.failure = f"issuing on {cluster.name}: {exc}"
            return
        progress.issued[cluster.name], progress.tokens[cluster.name] = record, token


def _record(
    attempt: _Attempt, generation: TokenGeneration, progress: _Progress, activate: bool
) -> None:
    account = attempt.account
    if not (progress.issued or progress.delivered or progress.undelivered or activate):
        return
    now = timezone.now()
    with transaction.atomic():
        _hold(account.pk, attempt.lease)
        fields = []
        if progress.issued:
            generation.issued = {**generation.issued, **progress.issued}
            generation.sealed_tokens = _seal(progress.tokens)
            generation.expires_at = _earliest(generation.issued)
            fields += ["issued", "sealed_tokens", "expires_at"]
        for target in (*progress.delivered, *progress.undelivered):
            target.save(
                update_fields=[
                    "resource_version",
                    "last_generation",
                    "last_delivered_at",
                    "last_error",
                ]
            )
        if progress.delivered:
            generation.delivered = [*generation.delivered, *(t.pk for t in progress.delivered)]
            fields.append("delivered")
        previous: list[TokenGeneration] = []
        if activate:
            previous = _supersede(attempt, generation, now)
            generation.state, generation.activated_at = GenerationState.ACTIVE, now
            generation.reveal_pending = account.show_to_owner
            if not generation.reveal_pending:
                generation.sealed_tokens = ""  # every target has it: Warden keeps no copy
            fields += ["state", "activated_at", "reveal_pending", "sealed_tokens"]
        if fields:
            generation.save(update_fields=sorted(set(fields)))
        # Audit last, so the chain's head row is locked only for the end of the transaction.
        # Steps that commit together are one event: a rotation that issued, delivered and put
        # a generation in force in one go is "rotated", with what it issued and delivered.
        issued = {
            "generation": generation.number,
            "clusters": sorted(progress.issued),
            "expires_at": generation.expires_at,
        }
        delivered = [str(t) for t in progress.delivered]
        if activate:
            _activated(account, generation, previous, now, issued, delivered)
        else:
            if progress.issued:
                audit.record("serviceaccount.token_issued", obj=account, after=issued)
            if progress.delivered:
                audit.record(
                    "serviceaccount.token_delivered",
                    obj=account,
                    after={"generation": generation.number, "targets": delivered},
                )
    if progress.issued:
        where = ", ".join(sorted(progress.issued))
        attempt.steps.append(f"issued generation {generation.number} on {where}")
    if progress.delivered:
        attempt.steps.append(f"delivered to {len(progress.delivered)} target(s)")
    if activate:
        attempt.steps.append(f"generation {generation.number} in force")


def _issue_on(
    cluster: Cluster, account: ManagedServiceAccount, generation: TokenGeneration
) -> tuple[dict[str, str], str]:
    client = k8s.client_for(services.endpoint_for(cluster))
    bound = _create_bound_secret(client, account, generation)
    seconds = int(account.token_lifetime.total_seconds())
    try:
        token, expires = client.request_token(account.namespace, account.name, seconds, bound)
    except KubeError as exc:
        if exc.status != 404 or "serviceaccounts" not in exc.message:
            raise
        # The ServiceAccount is not there yet (new account, or someone deleted it): the
        # reconciler writes it, as every object Warden owns, then the request is made again.
        run = services.reconcile_cluster(cluster.pk, trigger=ReconcileTrigger.CHANGE)
        if run is None:
            raise RotationFailed(
                f"the ServiceAccount is not on {cluster.name} yet and another worker is "
                "reconciling that cluster; retrying"
            ) from exc
        try:
            token, expires = client.request_token(account.namespace, account.name, seconds, bound)
        except KubeError as again:
            if again.status == 404:
                pending = "; ".join(run.pending.get(f"sa:{account.pk}", [])) or run.error
                raise RotationFailed(
                    f"the ServiceAccount cannot be created on {cluster.name}: "
                    f"{pending or 'see the cluster reconcile'}"
                ) from again
            raise
    record = {
        "secret": bound["name"],
        "uid": bound["uid"],
        "expires_at": expires,
        "server": cluster.api_url,
    }
    return record, token


def _bound_secret_body(account: ManagedServiceAccount, number: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": BOUND_SECRET_TYPE,
        "metadata": {
            "name": bound_secret_name(account, number),
            "namespace": account.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, GENERATION_LABEL: str(number)},
            "annotations": {
                SERVICE_ACCOUNT_ANNOTATION: str(account.pk),
                "warden.io/purpose": (
                    f"Tokens of generation {number} of service account {account.name} are "
                    "bound to this Secret: deleting it revokes them."
                ),
            },
        },
    }


def _create_bound_secret(
    client: k8s.KubeClient, account: ManagedServiceAccount, generation: TokenGeneration
) -> dict[str, str]:
    body = _bound_secret_body(account, generation.number)
    name, namespace = body["metadata"]["name"], account.namespace
    try:
        created = client.create(body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        current = client.get("Secret", name, namespace)
        if not _is_ours(current, account):
            raise KubeError(
                409,
                "NotOwned",
                f"Secret {namespace}/{name} exists and is not Warden's; it was left alone",
            ) from exc
        # Left by an attempt that died before recording its token: deleting it revokes that
        # token (which nobody holds), and the generation starts clean.
        client.delete("Secret", name, namespace, uid=current["metadata"]["uid"])
        created = client.create(body)
    return {"name": name, "uid": str(created["metadata"]["uid"])}


def _is_ours(obj: Mapping[str, Any], account: ManagedServiceAccount) -> bool:
    meta = obj.get("metadata") or {}
    return (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY and (
        meta.get("annotations") or {}
    ).get(SERVICE_ACCOUNT_ANNOTATION) == str(account.pk)


# --- delivery -----------------------------------------------------------------------------------


def kubeconfig_for(
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    issued: Mapping[str, Mapping[str, str]] | None = None,
    tokens: Mapping[str, str] | None = None,
    clusters: Iterable[Cluster] | None = None,
) -> str:
    """The generation's tokens as a ready kubeconfig (decrypts: call only to hand it over)."""
    tokens = _unseal(generation) if tokens is None else tokens
    issued = {**generation.issued, **(issued or {})}
    known = list(clusters) if clusters is not None else Cluster.objects.filter(name__in=tokens)
    ca = {c.name: c.ca_bundle for c in known}
    entries = [
        KubeconfigEntry(
            cluster=name, server=issued[name]["server"], ca_pem=ca.get(name, ""), token=token
        )
        for name, token in sorted(tokens.items())
    ]
    return build_kubeconfig(account.name, entries, namespace=account.namespace)


def _deliver(attempt: _Attempt, generation: TokenGeneration, progress: _Progress) -> None:
    """Hand the generation to every target that does not have it yet; one failing target does
    not stop the others (they get it now; the failed one on the retry)."""
    account = attempt.account
    targets = [
        t for t in account.targets.select_related("cluster") if t.pk not in generation.delivered
    ]
    if not targets:
        return
    tokens = progress.tokens
    kubeconfig = kubeconfig_for(account, generation, progress.issued, tokens, attempt.clusters())
    expires = _iso(_earliest({**generation.issued, **progress.issued}))
    for target in targets:
        try:
            if target.kind == DeliveryKind.SECRET:
                _deliver_secret(target, account, generation, tokens, kubeconfig, expires)
            else:
                _deliver_webhook(target, account, generation, progress, kubeconfig)
        except (KubeError, WebhookError) as exc:
            target.last_error = f"generation {generation.number}: {exc}"
            progress.undelivered.append(target)
            continue
        target.last_generation = generation.number
        target.last_delivered_at = timezone.now()
        target.last_error = ""
        progress.delivered.append(target)
    if progress.undelivered:
        progress.failure = "delivery failed: " + "; ".join(
            f"{t}: {t.last_error}" for t in progress.undelivered
        )


def _consumer_secret(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    tokens: Mapping[str, str],
    kubeconfig: str,
    expires: str,
) -> dict[str, Any]:
    data = {"kubeconfig": kubeconfig}
    if len(tokens) == 1:
        data["token"] = next(iter(tokens.values()))
    for cluster, token in tokens.items():
        data[f"token.{cluster}"] = token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": target.secret_name,
            "namespace": target.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, GENERATION_LABEL: str(generation.number)},
            "annotations": {
                SERVICE_ACCOUNT_ANNOTATION: str(account.pk),
                "warden.io/account": str(account),
                "warden.io/expires-at": expires,
            },
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _deliver_secret(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    tokens: Mapping[str, str],
    kubeconfig: str,
    expires: str,
) -> None:
    """Write the consumer's Secret: one conditional PUT when it is as Warden left it."""
    assert target.cluster is not None
    client = k8s.client_for(services.endpoint_for(target.cluster))
    body = _consumer_secret(target, account, generation, tokens, kubeconfig, expires)
    if target.resource_version:
        try:
            written = client.replace(_with_rv(body, target.resource_version))
            target.resource_version = _rv(written)
            return
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
            if exc.status == 404:
                target.resource_version = ""
    if not target.resource_version:
        try:
            written = client.create(body)
            target.resource_version = _rv(written)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
    # Changed by someone since Warden wrote it, or made before: take it over only if it is ours.
    current = client.get("Secret", target.secret_name, target.namespace)
    if not _is_ours(current, account):
        raise KubeError(
            409,
            "NotOwned",
            f"Secret {target.namespace}/{target.secret_name} on {target.cluster.name} exists and "
            "is not Warden's; it was left alone (remove it or pick another name)",
        )
    written = client.replace(_with_rv(body, _rv(current)))
    target.resource_version = _rv(written)


def _deliver_webhook(
    target: DeliveryTarget,
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    progress: _Progress,
    kubeconfig: str,
) -> None:
    issued = {**generation.issued, **progress.issued}
    payload = {
        "account": str(account),
        "account_id": account.pk,
        "owner_team": account.owner_team.name,
        "generation": generation.number,
        "expires_at": _iso(_earliest(issued)),
        "clusters": {
            name: {
                "server": issued[name]["server"],
                "expires_at": issued[name]["expires_at"],
                "token": token,
            }
            for name, token in sorted(progress.tokens.items())
        },
        "kubeconfig": kubeconfig,
    }
    body = json.dumps(payload, sort_keys=True).encode()
    post_signed(
        target.url,
        body,
        str(target.signing_key),
        ca_pem=target.ca_bundle,
        headers={"X-Warden-Generation": str(generation.number)},
    )


# --- activation and revocation -------------------------------------------------------------------


def _supersede(
    attempt: _Attempt, generation: TokenGeneration, now: datetime
) -> list[TokenGeneration]:
    """The generations in force until now enter their grace period (still valid until then)."""
    account = attempt.account
    previous = [
        g for g in attempt.live if g.state == GenerationState.ACTIVE and g.pk != generation.pk
    ]
    for old in previous:
        old.state, old.grace_until = GenerationState.GRACE, now + account.grace_period
        # Superseded: nobody should start using it now, so it is no longer shown.
        old.reveal_pending, old.sealed_tokens = False, ""
        old.save(update_fields=["state", "grace_until", "reveal_pending", "sealed_tokens"])
    return previous


def _activated(
    account: ManagedServiceAccount,
    generation: TokenGeneration,
    previous: list[TokenGeneration],
    now: datetime,
    issued: Mapping[str, Any],
    delivered: list[str],
) -> None:
    next_at = _next_rotation(now, account, generation.expires_at)
    ManagedServiceAccount.objects.filter(pk=account.pk).update(
        last_rotated_at=now,
        next_rotation_at=next_at,
        consecutive_failures=0,
        last_error="",
    )
    audit.record(
        "serviceaccount.rotated",
        obj=account,
        before={"active_generations": [old.number for old in previous]},
        after={
            "generation": generation.number,
            # what this attempt issued and delivered (earlier attempts have their own events)
            "issued_on": issued["clusters"],
            "expires_at": issued["expires_at"],
            "delivered_to": delivered,
            "previous_valid_until": now + account.grace_period if previous else None,
            "next_rotation_at": next_at,
        },
    )


def _next_rotation(
    now: datetime, account: ManagedServiceAccount, expires_at: datetime | None
) -> datetime:
    planned = now + account.rotation_period
    if expires_at is not None and expires_at - account.grace_period < planned:
        # The API server gave a shorter lifetime than asked: rotate at 80 % of what it gave.
        planned = now + (expires_at - now) * 0.8
    return planned


def _revoke_generations(attempt: _Attempt, everything: bool = False) -> int:
    """Revoke generations whose grace period is over (or all live ones); returns how many."""
    now = timezone.now()
    due = [
        g
        for g in attempt.live
        if everything
        or (g.state == GenerationState.GRACE and g.grace_until is not None and g.grace_until <= now)
    ]
    for generation in sorted(due, key=lambda g: g.number):
        _revoke(attempt, generation)
    return len(due)


def _revoke(attempt: _Attempt, generation: TokenGeneration) -> None:
    """Delete the generation's bound Secrets: the API server then refuses its tokens."""
    account = attempt.account
    clusters = {c.name: c for c in attempt.clusters()}
    if not set(generation.issued) <= set(clusters):  # it was issued where it no longer reaches
        clusters = {c.name: c for c in Cluster.objects.filter(name__in=list(generation.issued))}
    done: list[str] = []
    failure = ""
    for name, record in sorted(generation.issued.items()):
        if name in generation.revoked_on:
            continue
        cluster = clusters.get(name)
        if cluster is not None:
            client = k8s.client_for(services.endpoint_for(cluster))
            try:
                client.delete("Secret", record["secret"], account.namespace, uid=record["uid"])
            except KubeError as exc:
                # 404: already gone; 409: the name now holds another object, ours is gone.
                if exc.status not in (404, 409):
                    failure = f"revoking generation {generation.number} on {name}: {exc}"
                    continue
        done.append(name)
    with transaction.atomic():
        _hold(account.pk, attempt.lease)
        generation.revoked_on = [*generation.revoked_on, *done]
        fields = ["revoked_on"]
        if not failure:
            was_pending = generation.state == GenerationState.PENDING
            generation.state = GenerationState.ABANDONED if was_pending else GenerationState.REVOKED
            generation.revoked_at = timezone.now()
            generation.sealed_tokens = ""
            generation.reveal_pending = False
            fields += ["state", "revoked_at", "sealed_tokens", "reveal_pending"]
        generation.save(update_fields=fields)
        if done:
            audit.record(
                "serviceaccount.token_revoked",
                obj=account,
                after={"generation": generation.number, "clusters": sorted(done)},
            )
    if done:
        attempt.steps.append(f"revoked generation {generation.number} on {len(done)} cluster(s)")
    if failure:
        raise RotationFailed(failure)


def _finish(attempt: _Attempt, status: str, error: str = "") -> RotationRun:
    account = attempt.account
    with transaction.atomic():
        run = RotationRun.objects.create(
            account=account,
            generation=attempt.generation,
            trigger=attempt.trigger or RotationTrigger.SCHEDULE,
            status=status,
            started_at=attempt.started_at,
            finished_at=timezone.now(),
            duration_s=round(time.monotonic() - attempt.started, 3),
            api_calls=k8s.calls_in_this_thread() - attempt.calls_before,
            steps=attempt.steps,
            error=error[:2000],
        )
        if status == RotationStatus.FAILED:
            ManagedServiceAccount.objects.filter(pk=account.pk).update(
                consecutive_failures=F("consecutive_failures") + 1, last_error=error[:2000]
            )
            audit.record(
                "serviceaccount.rotation_failed",
                obj=account,
                after={
                    "generation": attempt.generation.number if attempt.generation else None,
                    "done": attempt.steps,
                },
                reason=error[:2000],
            )
            logger.warning("rotation of service account %s failed: %s", account, error)
    return run


def due_account_ids(now: datetime | None = None) -> list[int]:
    """Accounts whose tokens need something now: a rotation due or asked for, a generation left
    unfinished, a grace period ended, or a retired account with tokens still valid."""
    now = now or timezone.now()
    ids = set(
        ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE)
        .filter(Q(next_rotation_at__lte=now) | Q(rotation_requested_at__isnull=False))
        .values_list("id", flat=True)
    )
    generations = TokenGeneration.objects.filter(
        Q(state=GenerationState.PENDING)
        | Q(state=GenerationState.GRACE, grace_until__lte=now)
        | Q(account__state=AccountState.RETIRED, state__in=LIVE_GENERATIONS)
    )
    ids |= set(generations.values_list("account_id", flat=True))
    return sorted(ids)


# --- show once -----------------------------------------------------------------------------------


def reveal(generation_id: int, *, actor: Any) -> str:
    """The generation's kubeconfig, once: the first caller gets it, then it is gone for good."""
    with transaction.atomic():
        taken = TokenGeneration.objects.filter(
            pk=generation_id,
            reveal_pending=True,
            state__in=(GenerationState.ACTIVE, GenerationState.GRACE),
        ).update(
            reveal_pending=False,
            revealed_at=timezone.now(),
            revealed_by=actor if _is_user(actor) else None,
        )
        if not taken:
            raise AlreadyShown(
                "This token was already shown, or has been revoked; Warden keeps no copy. "
                "Rotate to get a new one."
            )
        generation = TokenGeneration.objects.select_related("account").get(pk=generation_id)
        kubeconfig = kubeconfig_for(generation.account, generation)
        generation.sealed_tokens = ""
        generation.save(update_fields=["sealed_tokens"])
        audit.record(
            "serviceaccount.token_shown",
            actor=actor,
            obj=generation.account,
            after={"generation": generation.number},
        )
    return kubeconfig


# --- after a reconcile ----------------------------------------------------------------------------


def after_reconcile(cluster: Cluster, created_keys: Iterable[tuple[str, str, str]]) -> list[int]:
    """The reconciler created a ServiceAccount for an account that already has tokens: either
    someone deleted it (a new uid, so every token issued there is dead) or the account now
    reaches a new cluster (no token there yet). Either way its consumers need a new generation."""
    created = {(ns, name) for kind, ns, name in created_keys if kind == "ServiceAccount"}
    if not created:
        return []
    asked = []
    live = ManagedServiceAccount.objects.filter(
        state=AccountState.ACTIVE,
        name__in={name for _ns, name in created},
        generations__state=GenerationState.ACTIVE,
    ).distinct()
    for account in live:
        if (account.namespace, account.name) not in created:
            continue
        issued_here = account.generations.filter(
            state=GenerationState.ACTIVE, issued__has_key=cluster.name
        ).exists()
        why = (
            f"the ServiceAccount was recreated on {cluster.name}: its tokens there no longer work"
            if issued_here
            else f"the account now reaches {cluster.name}, where it has no token yet"
        )
        request_rotation(account, reason=why)
        asked.append(account.pk)
    return asked


# --- legacy tokens -------------------------------------------------------------------------------


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
                    "created_in_cluster": _parse(str(meta.get("creationTimestamp") or "")),
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
    legacy: LegacyToken, data: AccountInput, *, actor: Any, reason: str
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
    _validate(data)
    client = k8s.client_for(services.endpoint_for(legacy.cluster))
    adopted = _adopt(client, legacy)
    with transaction.atomic():
        account = declare_service_account(data, actor=actor, adopted=adopted, reason=reason)
        legacy.state = LegacyTokenState.MIGRATED
        legacy.migrated_to = account
        legacy.save(update_fields=["state", "migrated_to"])
        audit.record(
            "legacytoken.migrated",
            actor=actor,
            obj=legacy,
            after={"account": str(account), "adopted_service_account": adopted},
            reason=reason,
        )
    return account


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


def delete_legacy_token(legacy: LegacyToken, *, actor: Any, reason: str) -> None:
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


# --- helpers --------------------------------------------------------------------------------------


def _seal(tokens: Mapping[str, str]) -> str:
    # The field encrypts on save; "" when there is nothing to keep.
    return json.dumps(dict(tokens), sort_keys=True) if tokens else ""


def _unseal(generation: TokenGeneration) -> dict[str, str]:
    raw = str(generation.sealed_tokens or "")
    return dict(json.loads(raw)) if raw else {}


def _parse(value: str) -> datetime | None:
    return parse_datetime(value) if value else None


def _earliest(issued: Mapping[str, Mapping[str, str]]) -> datetime | None:
    expiries = [_parse(record.get("expires_at", "")) for record in issued.values()]
    return min((e for e in expiries if e), default=None)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _with_rv(body: Mapping[str, Any], rv: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}


__all__ = [
    "AccountInput",
    "AlreadyShown",
    "RotationFailed",
    "add_delivery_target",
    "claim",
    "declare_service_account",
    "delete_legacy_token",
    "due_account_ids",
    "migrate_legacy_token",
    "release",
    "remove_delivery_target",
    "request_rotation",
    "retire_service_account",
    "reveal",
    "rotate_account",
    "scan_legacy_tokens",
]
