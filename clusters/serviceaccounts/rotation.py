"""Issuing, delivering, rotating and revoking the tokens of managed service accounts.

See the package docstring for the sequence, the lease and where token values live.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from access import audit
from clusters import k8s, services
from clusters.choices import (
    AccountState,
    DeliveryKind,
    GenerationState,
    ReconcileTrigger,
    RotationStatus,
    RotationTrigger,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_ACCOUNT_ANNOTATION
from clusters.k8s import KubeError
from clusters.models import (
    Cluster,
    ManagedServiceAccount,
    RotationRun,
    TokenGeneration,
)
from clusters.serviceaccounts.declare import _is_user, reached_clusters, request_rotation
from clusters.serviceaccounts.delivery import (
    GENERATION_LABEL,
    _deliver,
    _earliest,
    _is_ours,
    _Progress,
    _seal,
    _unseal,
    kubeconfig_for,
)
from clusters.webhooks import WebhookError

logger = logging.getLogger(__name__)


# The type of the per-generation Secret a token is bound to: it holds no data, it only exists.
BOUND_SECRET_TYPE = "warden.io/token-binding"  # noqa: S105 - a type name, not a secret


MIN_LIFETIME = timedelta(minutes=10)


LIVE_GENERATIONS = (GenerationState.PENDING, GenerationState.ACTIVE, GenerationState.GRACE)


class RotationFailed(Exception):
    """A rotation step did not complete; the generation in force is untouched."""


class LeaseLost(Exception):
    """Another worker took this account's rotation over (our lease had run out)."""


class AlreadyShown(Exception):
    """A token was already shown once, or there is none to show."""


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
    # Set once the lease is given back (by _finish, in the transaction recording the run).
    released: list[bool] = field(default_factory=list)
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
    released: list[bool] = []
    try:
        return _rotate_claimed(account_id, lease, trigger, actor, force, released)
    finally:
        if not released:  # _finish gives the lease back with the run it records
            release(account_id, lease)


def _rotate_claimed(
    account_id: int, lease: str, trigger: str, actor: Any, force: bool, released: list[bool]
) -> RotationRun | None:
    account = ManagedServiceAccount.objects.select_related("owner_team").get(pk=account_id)
    attempt = _Attempt(
        account=account,
        lease=lease,
        started_at=timezone.now(),
        started=time.monotonic(),
        calls_before=k8s.calls_in_this_thread(),
        trigger=trigger,
        released=released,
    )
    attempt.live = list(account.generations.filter(state__in=LIVE_GENERATIONS))
    try:
        if account.state == AccountState.RETIRED:
            attempt.trigger = RotationTrigger.RETIRE
            if not _revoke_generations(attempt, everything=True):
                return None
            _remove_delivered_secrets(attempt)
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


def _remove_delivered_secrets(attempt: _Attempt) -> None:
    """A retired account's consumer Secrets hold revoked tokens: delete those Warden wrote, as
    it last wrote them (a Secret changed since, or gone, is left as it is)."""
    removed = []
    for target in attempt.account.targets.filter(kind=DeliveryKind.SECRET).select_related(
        "cluster"
    ):
        if target.cluster is None or not target.resource_version:
            continue
        client = k8s.client_for(services.endpoint_for(target.cluster))
        try:
            client.delete(
                "Secret",
                target.secret_name,
                target.namespace,
                resource_version=target.resource_version,
            )
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
            continue
        removed.append(str(target))
    if removed:
        attempt.steps.append(f"deleted the consumer Secrets it had written: {', '.join(removed)}")


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
        ManagedServiceAccount.objects.filter(pk=account.pk, lease_id=attempt.lease).update(
            lease_id="", lease_until=None
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
    attempt.released.append(True)  # committed: the finally clause need not release again
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
