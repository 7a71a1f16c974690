"""Read queries of the machine side: fleet overview and rollout status."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery

from clusters.choices import ClusterState
from clusters.models import Cluster, ReconcileRun


def latest_runs() -> dict[int, ReconcileRun]:
    """The newest real (not dry-run) reconcile of each live cluster."""
    newest = ReconcileRun.objects.filter(cluster=OuterRef("pk"), dry_run=False).order_by(
        "-started_at", "-id"
    )
    ids = (
        Cluster.objects.exclude(state=ClusterState.RETIRED)
        .annotate(run_id=Subquery(newest.values("id")[:1]))
        .values_list("run_id", flat=True)
    )
    runs = ReconcileRun.objects.filter(id__in=[i for i in ids if i]).select_related("cluster")
    return {run.cluster_id: run for run in runs}


def rollout_status(grant_id: int, reached_cluster_ids: list[int]) -> list[dict[str, Any]]:
    """Per cluster the grant reaches: in force, pending (and why) or failed (and why)."""
    runs = latest_runs()
    clusters = Cluster.objects.filter(pk__in=reached_cluster_ids).order_by("name")
    rows = []
    for cluster in clusters:
        run = runs.get(cluster.pk)
        if run is None:
            rows.append(
                {"cluster": cluster.name, "state": "pending", "detail": "not reconciled yet"}
            )
        elif grant_id in (run.grants_in_force or []):
            rows.append({"cluster": cluster.name, "state": "in force", "detail": ""})
        elif str(grant_id) in (run.pending or {}):
            reasons = "; ".join(run.pending[str(grant_id)])
            rows.append({"cluster": cluster.name, "state": "pending", "detail": reasons})
        elif run.status == "failed":
            rows.append({"cluster": cluster.name, "state": "failed", "detail": run.error[:300]})
        else:
            rows.append(
                {"cluster": cluster.name, "state": "pending", "detail": "awaiting reconcile"}
            )
    return rows
