"""Metrics of the machine side: per-cluster reconcile state read at scrape time, and each
reconcile counted where it ran (see config/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import Metric

from clusters import selectors
from clusters.choices import AccountState, ClusterState, GenerationState, LegacyTokenState
from clusters.models import Cluster, LegacyToken, ReconcileRun, TokenGeneration
from config import metrics
from config.metrics import gauge, state_metrics

CLUSTER_LABELS = ("cluster", "environment", "tier")


@state_metrics
def cluster_reconciles() -> Iterator[Metric]:
    """The newest reconcile of every live cluster: duration, drift, failure, pending, when."""
    runs = selectors.latest_runs()
    families = {
        "duration": gauge(
            "warden_cluster_reconcile_duration_seconds",
            "Duration of the cluster's newest reconcile",
            CLUSTER_LABELS,
        ),
        "drift": gauge(
            "warden_cluster_reconcile_drift",
            "Managed objects the newest reconcile found changed or removed by someone else",
            CLUSTER_LABELS,
        ),
        "failed": gauge(
            "warden_cluster_reconcile_failed",
            "1 when the cluster's newest reconcile failed (its error is on the cluster's page)",
            CLUSTER_LABELS,
        ),
        "pending": gauge(
            "warden_cluster_pending_grants",
            "Grants the newest reconcile could not put in force there (e.g. a missing namespace)",
            CLUSTER_LABELS,
        ),
        "conflicts": gauge(
            "warden_cluster_name_conflicts",
            "Names Warden wants there that objects it does not own hold (a person must resolve)",
            CLUSTER_LABELS,
        ),
        "api_calls": gauge(
            "warden_cluster_reconcile_api_calls",
            "Kubernetes API calls of the cluster's newest reconcile",
            CLUSTER_LABELS,
        ),
        "finished": gauge(
            "warden_cluster_last_reconcile_timestamp_seconds",
            "Unix time the cluster's newest reconcile finished",
            CLUSTER_LABELS,
        ),
    }
    for run in runs.values():
        labels = [run.cluster.name, run.cluster.environment, run.cluster.tier]
        families["duration"].add_metric(labels, float(run.duration_s or 0.0))
        families["drift"].add_metric(labels, float(run.drift))
        families["failed"].add_metric(labels, 1.0 if run.status == "failed" else 0.0)
        families["pending"].add_metric(labels, float(len(run.pending or {})))
        families["api_calls"].add_metric(labels, float(run.api_calls))
        families["conflicts"].add_metric(labels, float(len(run.conflicts or [])))
        if run.finished_at is not None:
            families["finished"].add_metric(labels, run.finished_at.timestamp())
    yield from families.values()


@state_metrics
def clusters_by_state() -> Iterator[Metric]:
    counts = dict(
        Cluster.objects.values_list("state")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("state", "n")
    )
    family = gauge("warden_clusters", "Registered clusters by state", ["state"])
    for state in ClusterState.values:
        family.add_metric([state], float(counts.get(state, 0)))
    yield family


def count_reconcile(sender: Any, instance: ReconcileRun, created: bool, **kwargs: Any) -> None:
    """Count a recorded (not dry-run) reconcile in this process once its transaction commits."""
    if not created or instance.dry_run or instance.status == "running":
        return
    written = {
        "created": instance.created,
        "updated": instance.updated,
        "recreated": instance.recreated,
        "deleted": instance.deleted,
    }
    transaction.on_commit(
        lambda: metrics.observe_reconcile(instance.status, instance.duration_s, written)
    )


@state_metrics
def service_account_tokens() -> Iterator[Metric]:
    """The token in force of every active managed service account: its age and time left, so
    an alert can catch a rotation that keeps failing before consumers are locked out."""
    now = timezone.now()
    generations = (
        TokenGeneration.objects.filter(
            state=GenerationState.ACTIVE, account__state=AccountState.ACTIVE
        )
        .select_related("account")
        .only("activated_at", "created_at", "expires_at", "account__name", "account__namespace")
    )
    labels = ("namespace", "name")
    age = gauge(
        "warden_service_account_token_age_seconds",
        "Age of the service account's token in force (since it was put in force)",
        labels,
    )
    left = gauge(
        "warden_service_account_token_expiry_seconds",
        "Seconds until the service account's token in force expires on its first cluster",
        labels,
    )
    for generation in generations.iterator(chunk_size=2000):
        key = [generation.account.namespace, generation.account.name]
        since = generation.activated_at or generation.created_at
        age.add_metric(key, (now - since).total_seconds())
        if generation.expires_at is not None:
            left.add_metric(key, (generation.expires_at - now).total_seconds())
    yield age
    yield left
    legacy = gauge(
        "warden_legacy_tokens",
        "Long-lived service-account token Secrets found on the clusters (not migrated)",
        [],
    )
    legacy.add_metric([], float(LegacyToken.objects.filter(state=LegacyTokenState.FOUND).count()))
    yield legacy
