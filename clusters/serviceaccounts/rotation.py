"""Issuing, delivering, rotating and revoking the tokens of managed service accounts.

See the package docstring for the sequence, the lease and where token values live.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

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
    GenerationState,
    RotationStatus,
    RotationTrigger,
)
from clusters.k8s import KubeError
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
    deliver,
    earliest_expiry,
    kubeconfig_for,
    owned_by_account,
    seal_tokens,
    unseal_tokens,
)
from clusters.serviceaccounts.issuing import issue_missing, read_service_account
from clusters.serviceaccounts.lease import (
    claim_many,
    hold,
    raise_if_stopped,
    release_many,
    run_calls,
)
from clusters.serviceaccounts.revoking import remove_delivered_secrets, revoke_generations
from core.types import Actor, account_of

logger = logging.getLogger(__name__)


LIVE_GENERATIONS = (GenerationState.PENDING, GenerationState.ACTIVE, GenerationState.GRACE)


class AlreadyShown(Exception):
    """A token was already shown once, or there is none to show."""


class NotOwned(AlreadyShown):
    """The token's ServiceAccount is not (or no longer) Warden's on a cluster: never shown."""


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
    if not ids or not claim_many(ids, lease):
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
            release_many(ids, lease)


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
    revoked = revoke_generations([a for a in attempts if a.going])
    remove_delivered_secrets([a for a in retired if a.going and revoked.get(a)])
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
        held = hold(attempts, rotation_requested_at=None, rotation_requested_by=None)
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
    raise_if_stopped(attempt)
    assert attempt.generation is not None
    return attempt.generation


def _advance(attempts: list[Attempt]) -> None:
    """Issue what is missing, deliver to every target still without it, and, where all went
    well, put the generation in force; progress is written in one transaction either way."""
    for attempt in attempts:
        assert attempt.generation is not None
        attempt.progress = Progress(tokens=unseal_tokens(attempt.generation))
    run_calls(attempts, issue_missing)
    run_calls([a for a in attempts if a.going and not a.progress.failure], _deliver_to_targets)
    _record(attempts, activate=True)
    for attempt in attempts:
        if attempt.progress.failure and not attempt.lost:
            attempt.failure = attempt.progress.failure


def _deliver_to_targets(attempt: Attempt) -> None:
    assert attempt.generation is not None
    deliver(attempt, attempt.generation, attempt.progress)


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
        held = set(hold(a for a, _ in todo))
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
            release_many(pks, lease)
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
            current = read_service_account(client, account)
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


def _issue(attempt: Attempt, generation: TokenGeneration) -> None:
    """Only issue (and record) the tokens still missing: what a worker does first."""
    attempt.generation = generation
    attempt.progress = Progress(tokens=unseal_tokens(generation))
    run_calls([attempt], issue_missing)
    _record([attempt], activate=False)
    if attempt.progress.failure and not attempt.lost:
        attempt.failure = attempt.progress.failure
    raise_if_stopped(attempt)
