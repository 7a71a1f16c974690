"""The lease on an account row: one worker rotates an account at a time. Claimed with one
conditional UPDATE, renewed at every step, checked before every write; a worker that dies
holds nothing once its lease runs out."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clusters import k8s
from clusters.k8s import KubeError
from clusters.models import (
    ManagedServiceAccount,
)
from clusters.serviceaccounts.attempt import Attempt, RotationFailed
from core.webhooks import WebhookError

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took this account's rotation over (our lease had run out)."""


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.SERVICE_ACCOUNT_LEASE_SECONDS)


def claim(account_id: int) -> str | None:
    """Take the account's rotation lease if nobody holds a live one; returns its id or None."""
    lease = uuid.uuid4().hex
    return lease if claim_many([account_id], lease) else None


def claim_many(account_ids: Iterable[int], lease: str) -> int:
    """Take the lease of every account here that nobody holds (one conditional UPDATE);
    returns how many were taken."""
    now = timezone.now()
    return (
        ManagedServiceAccount.objects.filter(pk__in=list(account_ids))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_id=lease, lease_until=now + lease_duration())
    )


def release(account_id: int, lease: str) -> None:
    release_many([account_id], lease)


def release_many(account_ids: Iterable[int], lease: str) -> None:
    ManagedServiceAccount.objects.filter(pk__in=list(account_ids), lease_id=lease).update(
        lease_id="", lease_until=None
    )


def hold(attempts: Iterable[Attempt], **changes: Any) -> list[Attempt]:
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


def keep_holding(attempts: list[Attempt]) -> None:
    """Renew the leases of a batch whose Kubernetes calls take long (slow clusters), well
    before they run out; those taken over meanwhile are dropped."""
    if not attempts:
        return
    if time.monotonic() - attempts[0].batch.held_at < lease_duration().total_seconds() / 3:
        return
    with transaction.atomic():
        hold([a for a in attempts if a.going])


def raise_if_stopped(attempt: Attempt) -> None:
    if attempt.lost:
        raise LeaseLost(
            f"the rotation lease of service account {attempt.account.pk} was taken over"
        )
    if attempt.failure:
        raise RotationFailed(attempt.failure)


def run_calls(attempts: list[Attempt], step: Callable[[Attempt], None]) -> None:
    """Make one step's Kubernetes (or webhook) calls for each attempt in turn, counting them
    on the attempt and renewing the batch's leases when it takes long."""
    for attempt in attempts:
        keep_holding(attempts)
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
