"""Celery tasks of the machine side: thin callers of the services, fanned out per cluster or
account (service-account rotation: per batch of accounts, and per account on demand)."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

from clusters import discovery, serviceaccounts, services
from clusters.choices import ClusterState, DiscoveryTrigger, ReconcileTrigger, RotationStatus
from clusters.k8s import KubeError
from clusters.models import Cluster, DiscoverySource, FleetReconcile
from core.taskoptions import ONCE, retried

logger = logging.getLogger(__name__)


# A change's reconcile that finds another reconcile of its cluster under way tries again: that
# one may have read grants and the directory before the change. (A scheduled one need not.)
BUSY_RETRY_S = 2
BUSY_MAX_RETRIES = 30


@shared_task(
    bind=True, name="clusters.tasks.reconcile_cluster_task", **retried(tries=5, backoff_max_s=300)
)
def reconcile_cluster_task(
    self: Task, cluster_id: int, trigger: str = ReconcileTrigger.SCHEDULE
) -> int | None:
    """Reconcile one cluster. Safe to run twice at once: the second finds the lock held, and
    goes again after the first when a change asked for it."""
    run = services.reconcile_cluster(cluster_id, trigger=trigger)
    if (
        run is None
        and trigger != ReconcileTrigger.SCHEDULE
        and not self.request.is_eager
        and Cluster.objects.filter(pk=cluster_id).exclude(state=ClusterState.RETIRED).exists()
    ):
        countdown = min(BUSY_RETRY_S * 2 ** min(self.request.retries, 4), 30)
        raise self.retry(countdown=countdown, max_retries=BUSY_MAX_RETRIES)
    return run.pk if run else None


@shared_task(name="clusters.tasks.reconcile_fleet_task", **ONCE)
def reconcile_fleet_task(
    trigger: str = ReconcileTrigger.SCHEDULE, fleet_reconcile_id: int | None = None
) -> int:
    """Fan out one reconcile task per cluster of a fleet reconcile; returns how many.

    fleet_reconcile_id: the one an operator asked for (recorded then); None (the schedule):
    record one now, so that the fleet page shows its progress too.
    """
    fleet = None
    if fleet_reconcile_id is not None:
        fleet = FleetReconcile.objects.filter(pk=fleet_reconcile_id).first()
    if fleet is None:
        fleet = services.start_fleet_reconcile(trigger)
    for cluster_id in fleet.cluster_ids:
        reconcile_cluster_task.delay(cluster_id, trigger)
    return len(fleet.cluster_ids)


@shared_task(name="clusters.tasks.scan_shadow_access_task", **retried(tries=3))
def scan_shadow_access_task(cluster_id: int) -> int:
    """List one cluster's bindings outside Warden that name directory people; report only."""
    try:
        return len(services.scan_shadow_access(cluster_id))
    except KubeError:
        return -1  # unreachable or refused: the last findings stay; the reconcile reports why


@shared_task(name="clusters.tasks.scan_fleet_shadow_access_task", **ONCE)
def scan_fleet_shadow_access_task() -> int:
    ids = list(Cluster.objects.exclude(state=ClusterState.RETIRED).values_list("id", flat=True))
    for cluster_id in ids:
        scan_shadow_access_task.delay(cluster_id)
    return len(ids)


@shared_task(name="clusters.tasks.discover_source_task", **retried(tries=3, backoff_max_s=300))
def discover_source_task(source_id: int, trigger: str = DiscoveryTrigger.SCHEDULE) -> int | None:
    """One discovery run of one source. Safe twice at once: the second finds a run under way."""

    run = discovery.discover(source_id, trigger=trigger)
    return run.pk if run else None


@shared_task(name="clusters.tasks.discover_all_task", **ONCE)
def discover_all_task() -> int:
    """Fan out one discovery task per enabled source; returns how many."""
    ids = list(DiscoverySource.objects.filter(enabled=True).values_list("id", flat=True))
    for source_id in ids:
        discover_source_task.delay(source_id, DiscoveryTrigger.SCHEDULE)
    return len(ids)


class RotationRetry(Exception):
    """A rotation attempt failed (recorded on its RotationRun); the task tries again later."""


@shared_task(
    name="clusters.tasks.rotate_service_account_task",
    acks_late=True,
    autoretry_for=(RotationRetry, OSError),
    retry_backoff=30,
    retry_backoff_max=900,
    retry_jitter=True,
    max_retries=6,
)
def rotate_service_account_task(account_id: int) -> int | None:
    """Do what one account's tokens need now. Safe to run twice at once: the second finds the
    rotation lease held and does nothing; a failure leaves the old token valid and retries."""
    run = serviceaccounts.rotate_account(account_id)
    if run is not None and run.status == RotationStatus.FAILED:
        raise RotationRetry(f"rotation #{run.pk} of service account {account_id} failed")
    return run.pk if run else None


# How long an account whose attempt failed in a batch waits before its own task tries again
# (then that task's back-off applies).
RETRY_FAILED_ROTATION_S = 30


@shared_task(name="clusters.tasks.rotate_service_accounts_task", **retried(tries=3))
def rotate_service_accounts_task(account_ids: list[int]) -> int:
    """Do what a batch of accounts' tokens need now; returns how many had something done.

    Safe to run twice at once: an account whose lease another worker holds is skipped. An
    account whose attempt failed (the old token stays valid) is retried by its own task."""
    runs = serviceaccounts.rotate_accounts(account_ids)
    for account_id, run in sorted(runs.items()):
        if run.status == RotationStatus.FAILED:
            rotate_service_account_task.apply_async(
                (account_id,), countdown=RETRY_FAILED_ROTATION_S
            )
    return len(runs)


@shared_task(name="clusters.tasks.rotate_due_service_accounts_task", **ONCE)
def rotate_due_service_accounts_task() -> int:
    """Fan out the accounts with something due, SERVICE_ACCOUNT_ROTATION_BATCH per task
    (accounts on the same clusters together); returns how many accounts."""
    batches = serviceaccounts.due_batches(settings.SERVICE_ACCOUNT_ROTATION_BATCH)
    for account_ids in batches:
        rotate_service_accounts_task.delay(account_ids)
    return sum(len(batch) for batch in batches)


@shared_task(name="clusters.tasks.scan_legacy_tokens_task", **retried(tries=3))
def scan_legacy_tokens_task(cluster_id: int) -> int:
    """Record the legacy token Secrets of one cluster (report only); -1 when the cluster did
    not answer (the last report stays as it was; the next scan tries again)."""
    try:
        return serviceaccounts.scan_legacy_tokens(cluster_id)
    except KubeError as exc:
        logger.warning("legacy-token scan of cluster %s failed: %s", cluster_id, exc)
        return -1


@shared_task(name="clusters.tasks.scan_fleet_legacy_tokens_task", **ONCE)
def scan_fleet_legacy_tokens_task() -> int:
    """Fan out one legacy-token scan per live cluster; returns how many."""
    ids = list(Cluster.objects.exclude(state=ClusterState.RETIRED).values_list("id", flat=True))
    for cluster_id in ids:
        scan_legacy_tokens_task.delay(cluster_id)
    return len(ids)
