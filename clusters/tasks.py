"""Celery tasks of the machine side: thin callers of clusters.services, fanned out per cluster."""

from __future__ import annotations

from celery import shared_task

from clusters import services
from clusters.choices import ClusterState, DiscoveryTrigger, ReconcileTrigger
from clusters.k8s import KubeError
from clusters.models import Cluster, DiscoverySource, FleetReconcile


@shared_task(
    name="clusters.tasks.reconcile_cluster_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def reconcile_cluster_task(cluster_id: int, trigger: str = ReconcileTrigger.SCHEDULE) -> int | None:
    """Reconcile one cluster. Safe to run twice at once: the second finds the lock held."""
    run = services.reconcile_cluster(cluster_id, trigger=trigger)
    return run.pk if run else None


@shared_task(name="clusters.tasks.reconcile_fleet_task", acks_late=True)
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


@shared_task(
    name="clusters.tasks.scan_shadow_access_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
)
def scan_shadow_access_task(cluster_id: int) -> int:
    """List one cluster's bindings outside Warden that name directory people; report only."""
    try:
        return len(services.scan_shadow_access(cluster_id))
    except KubeError:
        return -1  # unreachable or refused: the last findings stay; the reconcile reports why


@shared_task(name="clusters.tasks.scan_fleet_shadow_access_task", acks_late=True)
def scan_fleet_shadow_access_task() -> int:
    ids = list(Cluster.objects.exclude(state=ClusterState.RETIRED).values_list("id", flat=True))
    for cluster_id in ids:
        scan_shadow_access_task.delay(cluster_id)
    return len(ids)


@shared_task(
    name="clusters.tasks.discover_source_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=3,
)
def discover_source_task(source_id: int, trigger: str = DiscoveryTrigger.SCHEDULE) -> int | None:
    """One discovery run of one source. Safe twice at once: the second finds a run under way."""
    from clusters import discovery

    run = discovery.discover(source_id, trigger=trigger)
    return run.pk if run else None


@shared_task(name="clusters.tasks.discover_all_task", acks_late=True)
def discover_all_task() -> int:
    """Fan out one discovery task per enabled source; returns how many."""
    ids = list(DiscoverySource.objects.filter(enabled=True).values_list("id", flat=True))
    for source_id in ids:
        discover_source_task.delay(source_id, DiscoveryTrigger.SCHEDULE)
    return len(ids)
