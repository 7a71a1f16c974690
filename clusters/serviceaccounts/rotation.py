"""Issuing, delivering, rotating and revoking the tokens of managed service accounts.

See the package docstring for the sequence, the lease and where token values live.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from access import audit
from access.words import count_of
from clusters import k8s, services
from clusters.bulk import update_rows
from clusters.choices import (
    AccountState,
    ClusterState,
    DeliveryKind,
    GenerationState,
    ReconcileTrigger,
    RotationStatus,
    RotationTrigger,
)
from clusters.compiler import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_ACCOUNT_ANNOTATION
from clusters.k8s import KubeError, Unreachable
from clusters.models import (
    Cluster,
    DeliveryTarget,
    ManagedServiceAccount,
    RotationRun,
    TokenGeneration,
)
from clusters.serviceaccounts.attempt import Attempt, Batch, Progress
from clusters.serviceaccounts.declare import request_rotation
from clusters.serviceaccounts.delivery import (
    GENERATION_LABEL,
    deliver,
    earliest_expiry,
    kubeconfig_for,
    owned_by_account,
    seal_tokens,
    unseal_tokens,
)
from core.types import Actor, account_of
from core.webhooks import WebhookError

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


class NotOwned(AlreadyShown):
    """The token's ServiceAccount is not (or no longer) Warden's on a cluster: never shown."""


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.SERVICE_ACCOUNT_LEASE_SECONDS)


def claim(account_id: int) -> str | None:
    """Take the account's rotation lease if nobody holds a live one; returns its id or None."""
    lease = uuid.uuid4().hex
    return lease if _claim_many([account_id], lease) else None


def _claim_many(account_ids: Iterable[int], lease: str) -> int:
    """Take the lease of every account here that nobody holds (one conditional UPDATE);
    returns how many were taken."""
    now = timezone.now()
    return (
        ManagedServiceAccount.objects.filter(pk__in=list(account_ids))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_id=lease, lease_until=now + lease_duration())
    )


def release(account_id: int, lease: str) -> None:
    _release_many([account_id], lease)


def _release_many(account_ids: Iterable[int], lease: str) -> None:
    ManagedServiceAccount.objects.filter(pk__in=list(account_ids), lease_id=lease).update(
        lease_id="", lease_until=None
    )


def rotate_account(
    account_id: int, *, trigger: str = "", actor: Actor = None, force: bool = False
) -> RotationRun | None:
    """Do whatever the account's tokens need now; None when nothing was due or another
    worker holds its rotation (both normal outcomes).

    "Whatever they need": finish a generation left unfinished, start one when due, requested
    or forced, revoke generations whose grace period is over, and, for a retired account,
    revoke everything. Failures are recorded on the returned run (status failed), never lose the
    generation in force, and are retried by the caller (the Celery task) and by beat.
    """
    runs = rotate_accounts([account_id], trigger=trigger, actor=actor, force=force)
    return runs.get(account_id)


def rotate_accounts(
    account_ids: Iterable[int], *, trigger: str = "", actor: Actor = None, force: bool = False
) -> dict[int, RotationRun]:
    """What rotate_account() does, for many accounts at once: the run of each account that
    had something to do, by account id (absent: nothing due, or another worker holds it).

    Each account keeps its own lease, generation, run and audit events, and one account's
    failure is only its own; what the batch shares is the work around them: one claim, one
    read of the accounts, generations, clusters and targets, and one transaction (and one
    audit lock) per step for all of them. The Kubernetes calls are the same five per rotation.
    """
    ids = sorted(set(account_ids))
    lease = uuid.uuid4().hex
    if not ids or not _claim_many(ids, lease):
        logger.info("service accounts %s: nothing to claim (another worker holds them)", ids)
        return {}
    attempts: list[Attempt] = []
    try:
        attempts = _load(ids, lease, trigger)
        return _rotate_claimed(attempts, actor, force)
    finally:
        # _finish gives the leases back with the runs it records; this is for the unexpected
        # (a database error, a bug): nobody waits for a lease to run out.
        if not attempts or not all(a.released for a in attempts):
            _release_many(ids, lease)


def _load(ids: list[int], lease: str, trigger: str) -> list[Attempt]:
    """The claimed accounts with what their rotation reads: live generations, reached
    clusters and delivery targets, in one query each however many accounts there are."""
    accounts = list(
        ManagedServiceAccount.objects.select_related("owner_team")
        .filter(pk__in=ids, lease_id=lease)
        .order_by("pk")
    )
    live: dict[int, list[TokenGeneration]] = {a.pk: [] for a in accounts}
    for generation in TokenGeneration.objects.filter(
        account_id__in=list(live), state__in=LIVE_GENERATIONS
    ):
        live[generation.account_id].append(generation)
    reached = _reached_clusters_of(accounts)
    clusters = {c.pk: c for cs in reached.values() for c in cs}
    targets: dict[int, list[DeliveryTarget]] = {a.pk: [] for a in accounts}
    found = list(DeliveryTarget.objects.filter(account_id__in=list(targets)))
    missing = {t.cluster_id for t in found if t.cluster_id and t.cluster_id not in clusters}
    if missing:  # consumers on clusters the accounts themselves do not reach
        clusters.update({c.pk: c for c in Cluster.objects.filter(pk__in=missing)})
    for target in found:
        if target.cluster_id:
            target.cluster = clusters[target.cluster_id]
        targets[target.account_id].append(target)
    now, started = timezone.now(), time.monotonic()
    batch = Batch(held_at=started)
    attempts = []
    for account in accounts:
        attempt = Attempt(
            account=account,
            lease=lease,
            started_at=now,
            started=started,
            trigger=trigger,
            live=live[account.pk],
            batch=batch,
        )
        attempt._clusters, attempt._targets = reached[account.pk], targets[account.pk]
        attempts.append(attempt)
    return attempts


def _reached_clusters_of(accounts: list[ManagedServiceAccount]) -> dict[int, list[Cluster]]:
    """reached_clusters() of each account, with one read of the clusters for all."""
    specs = {a.pk: a.spec(role_names=()) for a in accounts}
    live = Cluster.objects.exclude(state=ClusterState.RETIRED).order_by("name")
    if all(spec.clusters for spec in specs.values()):
        live = live.filter(name__in={name for spec in specs.values() for name in spec.clusters})
    clusters = [(cluster, cluster.spec()) for cluster in live]
    return {
        pk: [cluster for cluster, facts in clusters if spec.reaches(facts)]
        for pk, spec in specs.items()
    }


def _rotate_claimed(attempts: list[Attempt], actor: Actor, force: bool) -> dict[int, RotationRun]:
    retired = [a for a in attempts if a.account.state == AccountState.RETIRED]
    # A pending account (waiting for approval) gets no token.
    active = [a for a in attempts if a.account.state == AccountState.ACTIVE]
    now = timezone.now()
    starting = []
    for attempt in active:
        pending = [g for g in attempt.live if g.state == GenerationState.PENDING]
        if pending:
            attempt.generation = pending[-1]
            attempt.steps.append(f"resumed generation {attempt.generation.number}, left unfinished")
        elif force or _due(attempt.account, now):
            starting.append(attempt)
    _start_generations(starting, actor)
    advancing = [a for a in active if a.generation is not None and a.going]
    for attempt in advancing:
        assert attempt.generation is not None
        attempt.trigger = attempt.trigger or attempt.generation.trigger
    _advance(advancing)
    for attempt in retired:
        attempt.trigger = RotationTrigger.RETIRE
    revoked = _revoke_generations([a for a in attempts if a.going])
    _remove_delivered_secrets([a for a in retired if a.going and revoked.get(a)])
    # A run for each attempt that did something or failed; none when nothing was due.
    finished = [
        a
        for a in attempts
        if not a.lost and (a.failure or a.generation is not None or revoked.get(a))
    ]
    return _finish(finished, attempts)


def _due(account: ManagedServiceAccount, now: datetime) -> bool:
    if account.rotation_requested_at is not None:
        return True
    return account.next_rotation_at is not None and account.next_rotation_at <= now


def _hold(attempts: Iterable[Attempt], **changes: Any) -> list[Attempt]:
    """Renew our leases (and make `changes` to the accounts), inside the caller's transaction:
    their rows stay locked until it commits. An account whose lease was taken over is marked
    lost and left out of what is returned: nothing more is recorded for it."""
    attempts = [a for a in attempts if not a.lost]
    by_lease: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_lease.setdefault(attempt.lease, []).append(attempt)
    until = timezone.now() + lease_duration()
    for lease, group in by_lease.items():
        ids = [a.account.pk for a in group]
        mine = ManagedServiceAccount.objects.filter(pk__in=ids, lease_id=lease)
        if mine.update(lease_until=until, **changes) == len(ids):
            continue
        still = set(mine.values_list("pk", flat=True))
        for attempt in group:
            if attempt.account.pk not in still:
                attempt.lost = True
                logger.warning(
                    "service account %s: lease lost mid-rotation; the new holder goes on",
                    attempt.account.pk,
                )
    for attempt in attempts:
        attempt.batch.held_at = time.monotonic()
    return [a for a in attempts if not a.lost]


def _keep_holding(attempts: list[Attempt]) -> None:
    """Renew the leases of a batch whose Kubernetes calls take long (slow clusters), well
    before they run out; those taken over meanwhile are dropped."""
    if not attempts:
        return
    if time.monotonic() - attempts[0].batch.held_at < lease_duration().total_seconds() / 3:
        return
    with transaction.atomic():
        _hold([a for a in attempts if a.going])


def _start_generations(attempts: list[Attempt], actor: Actor) -> None:
    """A new pending generation for each account (one transaction, one INSERT for all)."""
    for attempt in attempts:
        if not attempt.clusters():
            attempt.failure = (
                "The account reaches no live cluster (check its cluster names and selector)."
            )
    attempts = [a for a in attempts if a.going]
    if not attempts:
        return
    who = account_of(actor)
    actor_id = who.pk if who is not None else None
    with transaction.atomic():
        # The accounts were read after the lease was taken; a request arriving since is
        # satisfied by the generation started here.
        held = _hold(attempts, rotation_requested_at=None, rotation_requested_by=None)
        # The newest generation is live unless every one was revoked; then ask the table.
        unknown = [a.account.pk for a in held if not a.live]
        newest = dict(
            TokenGeneration.objects.filter(account_id__in=unknown)
            .values("account_id")
            .annotate(top=Max("number"))
            .values_list("account_id", "top")
            if unknown
            else []
        )
        generations = []
        for attempt in held:
            account = attempt.account
            number = max((g.number for g in attempt.live), default=newest.get(account.pk) or 0) + 1
            requested_by_id = actor_id or account.rotation_requested_by_id
            generations.append(
                TokenGeneration(
                    account=account,
                    number=number,
                    trigger=attempt.trigger or _trigger(account, number, requested_by_id),
                    requested_by_id=requested_by_id,
                )
            )
        TokenGeneration.objects.bulk_create(generations)
    for attempt, generation in zip(held, generations, strict=True):
        attempt.live.append(generation)
        attempt.generation = generation
        attempt.steps.append(f"started generation {generation.number}")


def _trigger(account: ManagedServiceAccount, number: int, requested_by_id: int | None) -> str:
    if number == 1:
        return RotationTrigger.ADOPTED if account.adopted else RotationTrigger.DECLARED
    if account.rotation_requested_at is not None and requested_by_id is None:
        # Requested by Warden itself: the reconciler had to recreate the ServiceAccount.
        return RotationTrigger.RECREATED
    if account.rotation_requested_at is not None:
        return RotationTrigger.PERSON
    return RotationTrigger.SCHEDULE


def _start_generation(attempt: Attempt, actor: Actor) -> TokenGeneration:
    """_start_generations() for one attempt (what a worker does first; tests stop here)."""
    _start_generations([attempt], actor)
    _raise_if_stopped(attempt)
    assert attempt.generation is not None
    return attempt.generation


def _raise_if_stopped(attempt: Attempt) -> None:
    if attempt.lost:
        raise LeaseLost(
            f"the rotation lease of service account {attempt.account.pk} was taken over"
        )
    if attempt.failure:
        raise RotationFailed(attempt.failure)


def bound_secret_name(account: ManagedServiceAccount, number: int) -> str:
    return f"{account.name}-warden-{number}"


def _advance(attempts: list[Attempt]) -> None:
    """Issue what is missing, deliver to every target still without it, and, where all went
    well, put the generation in force; progress is written in one transaction either way."""
    for attempt in attempts:
        assert attempt.generation is not None
        attempt.progress = Progress(tokens=unseal_tokens(attempt.generation))
    _calls(attempts, _issue_missing)
    _calls([a for a in attempts if a.going and not a.progress.failure], _deliver_to_targets)
    _record(attempts, activate=True)
    for attempt in attempts:
        if attempt.progress.failure and not attempt.lost:
            attempt.failure = attempt.progress.failure


def _deliver_to_targets(attempt: Attempt) -> None:
    assert attempt.generation is not None
    deliver(attempt, attempt.generation, attempt.progress)


def _calls(attempts: list[Attempt], step: Callable[[Attempt], None]) -> None:
    """Make one step's Kubernetes (or webhook) calls for each attempt in turn, counting them
    on the attempt and renewing the batch's leases when it takes long."""
    for attempt in attempts:
        _keep_holding(attempts)
        if not attempt.going:
            continue
        before = k8s.calls_in_this_thread()
        try:
            step(attempt)
        except (KubeError, WebhookError, RotationFailed) as exc:
            attempt.failure = str(exc)
        except Exception:
            # One account's surprise is its own: the batch goes on, and this account is
            # retried alone (its lease is given back with the others).
            logger.exception("rotation of service account %s failed", attempt.account.pk)
            attempt.failure = "unexpected error; see the worker log"
        finally:
            attempt.api_calls += k8s.calls_in_this_thread() - before


def _issue(attempt: Attempt, generation: TokenGeneration) -> None:
    """Only issue (and record) the tokens still missing: what a worker does first."""
    attempt.generation = generation
    attempt.progress = Progress(tokens=unseal_tokens(generation))
    _calls([attempt], _issue_missing)
    _record([attempt], activate=False)
    if attempt.progress.failure and not attempt.lost:
        attempt.failure = attempt.progress.failure
    _raise_if_stopped(attempt)


def _issue_missing(attempt: Attempt) -> None:
    """A token on every reached cluster that has none yet; stops at the first failure (what
    was issued before it is still recorded, so a retry only does the rest)."""
    generation, progress = attempt.generation, attempt.progress
    assert generation is not None
    for cluster in attempt.clusters():
        if cluster.name in generation.issued:
            if cluster.name in progress.tokens and not _still_owned(attempt, cluster):
                return  # a token an earlier attempt got is not delivered: see progress.failure
            continue
        down = attempt.batch.unreachable.get(cluster.name)
        if down:
            progress.failure = f"issuing on {cluster.name}: {down}"
            return
        try:
            record, token = _issue_on(cluster, attempt.account, generation)
        except (KubeError, RotationFailed) as exc:
            progress.failure = f"issuing on {cluster.name}: {exc}"
            _note_unreachable(attempt, cluster, exc)
            return
        progress.issued[cluster.name], progress.tokens[cluster.name] = record, token


def _still_owned(attempt: Attempt, cluster: Cluster) -> bool:
    """A resumed generation's token from an earlier attempt is delivered only if its
    ServiceAccount is still Warden's (and this account's) on the cluster now."""
    client = k8s.client_for(services.endpoint_for(cluster))
    try:
        check_service_account_owned(client, cluster, attempt.account)
    except (KubeError, RotationFailed) as exc:
        attempt.progress.failure = f"checking {cluster.name}: {exc}"
        _note_unreachable(attempt, cluster, exc)
        return False
    return True


def _note_unreachable(attempt: Attempt, cluster: Cluster, exc: Exception) -> None:
    """A cluster that did not answer (after the client's retries) is not asked again by the
    rest of the batch: their attempts fail at once and are retried like this one."""
    if isinstance(exc, Unreachable):
        attempt.batch.unreachable[cluster.name] = f"{exc} (not tried again in this batch)"


def _record(attempts: list[Attempt], activate: bool) -> None:
    """Write down what the attempts did on the clusters, in one transaction: tokens issued,
    targets delivered, and (when `activate` and all went well) the generation put in force."""
    now = timezone.now()
    todo = []
    for attempt in attempts:
        progress = attempt.progress
        attempt_activates = activate and not (progress.failure or attempt.failure)
        if progress.issued or progress.delivered or progress.undelivered or attempt_activates:
            todo.append((attempt, attempt_activates))
    if not todo:
        return
    with transaction.atomic():
        held = set(_hold(a for a, _ in todo))
        todo = [(a, activates) for a, activates in todo if a in held]
        targets: list[DeliveryTarget] = []
        generations: dict[tuple[str, ...], list[TokenGeneration]] = {}
        superseded: list[TokenGeneration] = []
        rotated: list[Attempt] = []
        events: list[audit.Entry] = []
        for attempt, activates in todo:
            generation, progress = attempt.generation, attempt.progress
            assert generation is not None
            fields = []
            previous: list[TokenGeneration] = []
            if progress.issued:
                generation.issued = {**generation.issued, **progress.issued}
                generation.sealed_tokens = seal_tokens(progress.tokens)
                generation.expires_at = earliest_expiry(generation.issued)
                fields += ["issued", "sealed_tokens", "expires_at"]
            targets += [*progress.delivered, *progress.undelivered]
            if progress.delivered:
                generation.delivered = [*generation.delivered, *(t.pk for t in progress.delivered)]
                fields.append("delivered")
            if activates:
                previous = _supersede(attempt, generation, now)
                superseded += previous
                rotated.append(attempt)
                generation.state, generation.activated_at = GenerationState.ACTIVE, now
                generation.reveal_pending = attempt.account.show_to_owner
                if not generation.reveal_pending:
                    generation.sealed_tokens = ""  # every target has it: Warden keeps no copy
                fields += ["state", "activated_at", "reveal_pending", "sealed_tokens"]
            if fields:
                generations.setdefault(tuple(sorted(set(fields))), []).append(generation)
            events += _progress_events(attempt, activates, previous, now)
        if targets:
            update_rows(
                targets,
                ["resource_version", "last_generation", "last_delivered_at", "last_error"],
            )
        _save_superseded(superseded)
        for written, group in generations.items():
            update_rows(group, written)
        _save_rotated(rotated, now)
        # Audit last, so the chain's head row is locked only for the end of the transaction.
        audit.record_many(events)
    for attempt, activates in todo:
        generation, progress = attempt.generation, attempt.progress
        assert generation is not None
        if progress.issued:
            where = ", ".join(sorted(progress.issued))
            attempt.steps.append(f"issued generation {generation.number} on {where}")
        if progress.delivered:
            attempt.steps.append(f"delivered to {count_of(len(progress.delivered), 'target')}")
        if activates:
            attempt.steps.append(f"generation {generation.number} in force")


def _progress_events(
    attempt: Attempt, activates: bool, previous: list[TokenGeneration], now: datetime
) -> list[audit.Entry]:
    """Steps that commit together are one event: a rotation that issued, delivered and put a
    generation in force in one go is "rotated", with what it issued and delivered."""
    account, generation, progress = attempt.account, attempt.generation, attempt.progress
    assert generation is not None
    issued = {
        "generation": generation.number,
        "clusters": sorted(progress.issued),
        "expires_at": generation.expires_at,
    }
    delivered = [str(t) for t in progress.delivered]
    if activates:
        return [
            audit.Entry(
                "serviceaccount.rotated",
                obj=account,
                before={"active_generations": [old.number for old in previous]},
                after={
                    "generation": generation.number,
                    # what this attempt issued and delivered (earlier attempts have their own)
                    "issued_on": issued["clusters"],
                    "expires_at": issued["expires_at"],
                    "delivered_to": delivered,
                    "previous_valid_until": now + account.grace_period if previous else None,
                    "next_rotation_at": _next_rotation(now, account, generation.expires_at),
                },
            )
        ]
    events = []
    if progress.issued:
        events.append(audit.Entry("serviceaccount.token_issued", obj=account, after=issued))
    if progress.delivered:
        events.append(
            audit.Entry(
                "serviceaccount.token_delivered",
                obj=account,
                after={"generation": generation.number, "targets": delivered},
            )
        )
    return events


def _issue_on(
    cluster: Cluster, account: ManagedServiceAccount, generation: TokenGeneration
) -> tuple[dict[str, str], str]:
    client = k8s.client_for(services.endpoint_for(cluster))
    check_service_account_owned(client, cluster, account)
    bound = _create_bound_secret(client, account, generation)
    seconds = int(account.token_lifetime.total_seconds())
    token, expires = client.request_token(account.namespace, account.name, seconds, bound)
    record = {
        "secret": bound["name"],
        "uid": bound["uid"],
        "expires_at": expires,
        "server": cluster.api_url,
    }
    return record, token


def check_service_account_owned(
    client: k8s.KubeClient, cluster: Cluster, account: ManagedServiceAccount
) -> None:
    """RotationFailed unless the ServiceAccount on `cluster` is the one Warden keeps for this
    account (its managed-by label and this account's id annotation), read now: Warden never
    asks for a token of a ServiceAccount it did not create and does not own."""
    current = _read_service_account(client, account)
    if current is None or not owned_by_account(current, account):
        # Not there yet (new account, or someone deleted it), or adopted and not yet marked:
        # the reconciler writes it, as every object Warden owns (and nothing it does not own).
        run = services.reconcile_cluster(cluster.pk, trigger=ReconcileTrigger.CHANGE)
        if run is None:
            raise RotationFailed(
                f"the ServiceAccount is not ready on {cluster.name} and another worker is "
                "reconciling that cluster; retrying"
            )
        current = _read_service_account(client, account)
        if current is None:
            pending = "; ".join(run.pending.get(f"sa:{account.pk}", [])) or run.error
            raise RotationFailed(
                f"the ServiceAccount cannot be created on {cluster.name}: "
                f"{pending or 'see the cluster reconcile'}"
            )
    if not owned_by_account(current, account):
        raise RotationFailed(
            f"ServiceAccount {account.namespace}/{account.name} on {cluster.name} is not "
            "Warden's (no managed-by label and id annotation of this account): no token is "
            "requested for it"
        )


def _read_service_account(
    client: k8s.KubeClient, account: ManagedServiceAccount
) -> dict[str, Any] | None:
    try:
        return client.get("ServiceAccount", account.name, account.namespace)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


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
        if not owned_by_account(current, account):
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
    attempt: Attempt, generation: TokenGeneration, now: datetime
) -> list[TokenGeneration]:
    """The generations in force until now enter their grace period (still valid until then);
    saved by _save_superseded()."""
    account = attempt.account
    previous = [
        g for g in attempt.live if g.state == GenerationState.ACTIVE and g.pk != generation.pk
    ]
    for old in previous:
        old.state, old.grace_until = GenerationState.GRACE, now + account.grace_period
        # Superseded: nobody should start using it now, so it is no longer shown.
        old.reveal_pending, old.sealed_tokens = False, ""
    return previous


def _save_superseded(superseded: list[TokenGeneration]) -> None:
    # One UPDATE per distinct end of grace (a batch rotated at one moment has few).
    by_grace: dict[datetime | None, list[int]] = {}
    for old in superseded:
        by_grace.setdefault(old.grace_until, []).append(old.pk)
    for grace_until, pks in by_grace.items():
        TokenGeneration.objects.filter(pk__in=pks).update(
            state=GenerationState.GRACE,
            grace_until=grace_until,
            reveal_pending=False,
            sealed_tokens="",
        )


def _save_rotated(rotated: list[Attempt], now: datetime) -> None:
    """The accounts whose new generation is in force: rotated now, next rotation planned."""
    by_next: dict[datetime, list[int]] = {}
    for attempt in rotated:
        assert attempt.generation is not None
        next_at = _next_rotation(now, attempt.account, attempt.generation.expires_at)
        by_next.setdefault(next_at, []).append(attempt.account.pk)
    for next_at, pks in by_next.items():
        ManagedServiceAccount.objects.filter(pk__in=pks).update(
            last_rotated_at=now,
            next_rotation_at=next_at,
            consecutive_failures=0,
            last_error="",
        )


def _next_rotation(
    now: datetime, account: ManagedServiceAccount, expires_at: datetime | None
) -> datetime:
    planned = now + account.rotation_period
    if expires_at is not None and expires_at - account.grace_period < planned:
        # The API server gave a shorter lifetime than asked: rotate at 80 % of what it gave.
        planned = now + (expires_at - now) * 0.8
    return planned


@dataclass
class _Revocation:
    """One generation being revoked: where its bound Secrets are gone, and what failed."""

    attempt: Attempt
    generation: TokenGeneration
    done: list[str] = field(default_factory=list)
    failure: str = ""


def _revoke_generations(attempts: list[Attempt]) -> dict[Attempt, int]:
    """Revoke the generations whose grace period is over, or every live one of a retired
    account; returns how many each attempt had to revoke."""
    now = timezone.now()
    due: dict[Attempt, list[TokenGeneration]] = {}
    for attempt in attempts:
        everything = attempt.account.state == AccountState.RETIRED
        due[attempt] = sorted(
            (
                g
                for g in attempt.live
                if everything
                or (
                    g.state == GenerationState.GRACE
                    and g.grace_until is not None
                    and g.grace_until <= now
                )
            ),
            key=lambda g: g.number,
        )
    revoking = [a for a in attempts if due[a]]
    revocations: list[_Revocation] = []

    def delete_secrets(attempt: Attempt) -> None:
        for generation in due[attempt]:
            revocation = _revoke(attempt, generation)
            revocations.append(revocation)
            if revocation.failure:
                return  # the later ones wait for the retry, as they would have in order

    _calls(revoking, delete_secrets)
    _record_revocations(revocations)
    return {key: len(generations) for key, generations in due.items()}


def _revoke(attempt: Attempt, generation: TokenGeneration) -> _Revocation:
    """Delete the generation's bound Secrets: the API server then refuses its tokens."""
    account = attempt.account
    revocation = _Revocation(attempt, generation)
    clusters = {c.name: c for c in attempt.clusters()}
    if not set(generation.issued) <= set(clusters):  # it was issued where it no longer reaches
        clusters = {c.name: c for c in Cluster.objects.filter(name__in=list(generation.issued))}
    for name, record in sorted(generation.issued.items()):
        if name in generation.revoked_on:
            continue
        cluster = clusters.get(name)
        if cluster is not None:
            down = attempt.batch.unreachable.get(name)
            if down:
                revocation.failure = f"revoking generation {generation.number} on {name}: {down}"
                continue
            client = k8s.client_for(services.endpoint_for(cluster))
            try:
                client.delete("Secret", record["secret"], account.namespace, uid=record["uid"])
            except KubeError as exc:
                # 404: already gone; 409: the name now holds another object, ours is gone.
                if exc.status not in (404, 409):
                    revocation.failure = f"revoking generation {generation.number} on {name}: {exc}"
                    _note_unreachable(attempt, cluster, exc)
                    continue
        revocation.done.append(name)
    return revocation


def _record_revocations(revocations: list[_Revocation]) -> None:
    """Write down the revocations in one transaction: each generation revoked where its
    Secrets are gone, and revoked for good when nothing failed."""
    if not revocations:
        return
    now = timezone.now()
    with transaction.atomic():
        held = set(_hold(dict.fromkeys(r.attempt for r in revocations)))
        revocations = [r for r in revocations if r.attempt in held]
        finished, partial, events = [], [], []
        for revocation in revocations:
            generation = revocation.generation
            generation.revoked_on = [*generation.revoked_on, *revocation.done]
            if revocation.failure:
                partial.append(generation)
            else:
                was_pending = generation.state == GenerationState.PENDING
                generation.state = (
                    GenerationState.ABANDONED if was_pending else GenerationState.REVOKED
                )
                generation.revoked_at = now
                generation.sealed_tokens = ""
                generation.reveal_pending = False
                finished.append(generation)
            if revocation.done:
                events.append(
                    audit.Entry(
                        "serviceaccount.token_revoked",
                        obj=revocation.attempt.account,
                        after={
                            "generation": generation.number,
                            "clusters": sorted(revocation.done),
                        },
                    )
                )
        if finished:
            update_rows(
                finished, ["revoked_on", "state", "revoked_at", "sealed_tokens", "reveal_pending"]
            )
        if partial:
            update_rows(partial, ["revoked_on"])
        audit.record_many(events)
    for revocation in revocations:
        attempt, generation = revocation.attempt, revocation.generation
        if revocation.done:
            attempt.steps.append(
                f"revoked generation {generation.number} on "
                f"{count_of(len(revocation.done), 'cluster')}"
            )
        if revocation.failure and not attempt.failure:
            attempt.failure = revocation.failure


def _remove_delivered_secrets(attempts: list[Attempt]) -> None:
    """A retired account's consumer Secrets hold revoked tokens: delete those Warden wrote, as
    it last wrote them (a Secret changed since, or gone, is left as it is)."""

    def remove(attempt: Attempt) -> None:
        removed = []
        for target in attempt.targets():
            if target.kind != DeliveryKind.SECRET:
                continue
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
                    attempt.failure = str(exc)
                    return
                continue
            removed.append(str(target))
        if removed:
            attempt.steps.append(
                f"deleted the consumer Secrets it had written: {', '.join(removed)}"
            )

    _calls(attempts, remove)


def _finish(finished: list[Attempt], attempts: list[Attempt]) -> dict[int, RotationRun]:
    """Record a run for each attempt that did something (or failed) and give every lease of
    the batch back, in one transaction."""
    now, elapsed = timezone.now(), time.monotonic()
    runs = [
        RotationRun(
            account=attempt.account,
            generation=attempt.generation,
            trigger=attempt.trigger or RotationTrigger.SCHEDULE,
            status=RotationStatus.FAILED if attempt.failure else RotationStatus.SUCCEEDED,
            started_at=attempt.started_at,
            finished_at=now,
            duration_s=round(elapsed - attempt.started, 3),
            api_calls=attempt.api_calls,
            steps=attempt.steps,
            error=attempt.failure[:2000],
        )
        for attempt in finished
    ]
    failed = [a for a in finished if a.failure]
    with transaction.atomic():
        RotationRun.objects.bulk_create(runs)
        by_lease: dict[str, list[int]] = {}
        for attempt in attempts:
            by_lease.setdefault(attempt.lease, []).append(attempt.account.pk)
        for lease, pks in by_lease.items():
            _release_many(pks, lease)
        for attempt in failed:
            ManagedServiceAccount.objects.filter(pk=attempt.account.pk).update(
                consecutive_failures=F("consecutive_failures") + 1,
                last_error=attempt.failure[:2000],
            )
        audit.record_many(
            audit.Entry(
                "serviceaccount.rotation_failed",
                obj=attempt.account,
                after={
                    "generation": attempt.generation.number if attempt.generation else None,
                    "done": attempt.steps,
                },
                reason=attempt.failure[:2000],
            )
            for attempt in failed
        )
    for attempt in attempts:
        attempt.released = True  # committed: rotate_accounts need not release again
    for attempt in failed:
        logger.warning(
            "rotation of service account %s failed: %s", attempt.account, attempt.failure
        )
    return {run.account_id: run for run in runs}


def due_account_ids(now: datetime | None = None) -> list[int]:
    """Accounts whose tokens need something now: a rotation due or asked for, a generation left
    unfinished, a grace period ended, or a retired account with tokens still valid."""
    return sorted(_due_accounts(now))


def due_batches(size: int, now: datetime | None = None) -> list[list[int]]:
    """due_account_ids() cut into batches of at most `size`, accounts on the same clusters
    together: a batch then reads few clusters and reuses its connections to them."""
    due = _due_accounts(now)
    ordered = sorted(due, key=lambda pk: (due[pk], pk))
    return [ordered[i : i + size] for i in range(0, len(ordered), max(1, size))]


def _due_accounts(now: datetime | None = None) -> dict[int, tuple[str, ...]]:
    """The due accounts (see due_account_ids) with the cluster names each is declared on."""
    now = now or timezone.now()
    found = ManagedServiceAccount.objects.filter(state=AccountState.ACTIVE).filter(
        Q(next_rotation_at__lte=now) | Q(rotation_requested_at__isnull=False)
    )
    due = {pk: tuple(sorted(names or ())) for pk, names in found.values_list("id", "clusters")}
    generations = TokenGeneration.objects.filter(
        Q(state=GenerationState.PENDING)
        | Q(state=GenerationState.GRACE, grace_until__lte=now)
        | Q(account__state=AccountState.RETIRED, state__in=LIVE_GENERATIONS)
    )
    for pk, names in generations.values_list("account_id", "account__clusters"):
        due[pk] = tuple(sorted(names or ()))
    return due


def reveal(generation_id: int, *, actor: Actor) -> str:
    """The generation's kubeconfig, once: the first caller gets it, then it is gone for good.

    Each cluster is asked first whether the ServiceAccount is still Warden's: a token of one
    it does not own is dropped, never handed over."""
    _check_reveal_owned(generation_id, actor)
    with transaction.atomic():
        taken = TokenGeneration.objects.filter(
            pk=generation_id,
            reveal_pending=True,
            state__in=(GenerationState.ACTIVE, GenerationState.GRACE),
        ).update(
            reveal_pending=False,
            revealed_at=timezone.now(),
            revealed_by=account_of(actor),
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


def _check_reveal_owned(generation_id: int, actor: Actor) -> None:
    generation = TokenGeneration.objects.select_related("account").filter(pk=generation_id).first()
    if generation is None or not generation.reveal_pending:
        return  # reveal() says it is gone
    account = generation.account
    clusters = Cluster.objects.filter(name__in=list(generation.issued)).order_by("name")
    for cluster in clusters:
        client = k8s.client_for(services.endpoint_for(cluster))
        try:
            current = _read_service_account(client, account)
        except KubeError as exc:
            raise AlreadyShown(
                f"{cluster.name} cannot be asked whether the ServiceAccount is still Warden's "
                f"({exc.status}); try again later."
            ) from exc
        if current is not None and owned_by_account(current, account):
            continue
        with transaction.atomic():
            TokenGeneration.objects.filter(pk=generation.pk).update(
                reveal_pending=False, sealed_tokens=""
            )
            audit.record(
                "serviceaccount.token_withheld",
                actor=actor,
                obj=account,
                after={"generation": generation.number, "cluster": cluster.name},
                reason="the ServiceAccount is not Warden's on that cluster",
            )
        raise NotOwned(
            f"ServiceAccount {account} on {cluster.name} is not Warden's: its token is never "
            "shown, and Warden keeps no copy."
        )


def rotate_for_created_accounts(
    sender: Any, *, cluster: Cluster, created: Iterable[tuple[str, str, str]], **_: Any
) -> None:
    """Receiver of clusters.signals.objects_created: see after_reconcile."""
    after_reconcile(cluster, created)


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
