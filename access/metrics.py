"""State metrics of the people side, read at scrape time (see config/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import Metric

from access import selectors
from access.choices import RequestState, SyncStatus
from access.models import AccessRequest
from config.metrics import gauge, state_metrics

# What a finished sync counted, as gauges of the last sync (warden_directory_sync_<field>).
SYNC_COUNTS = (
    "people_seen",
    "teams_seen",
    "people_created",
    "people_deactivated",
    "people_reactivated",
    "teams_created",
    "teams_deactivated",
    "memberships_added",
    "memberships_removed",
)


@state_metrics
def pending_access_requests() -> Iterator[Metric]:
    """Requests waiting for a decision, and how long the oldest has waited."""
    row = AccessRequest.objects.filter(state=RequestState.PENDING).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    pending = gauge("warden_access_requests_pending", "Access requests waiting for approval")
    pending.add_metric([], row["n"] or 0)
    yield pending
    oldest = gauge(
        "warden_access_request_oldest_pending_seconds",
        "How long the oldest pending access request has waited (0 when none waits)",
    )
    waited = (timezone.now() - row["oldest"]).total_seconds() if row["oldest"] else 0.0
    oldest.add_metric([], waited)
    yield oldest


@state_metrics
def directory_sync() -> Iterator[Metric]:
    """The last directory sync: its status, when it ran, what it counted; the last success."""
    last = selectors.last_sync()
    status = gauge(
        "warden_directory_sync_last_status",
        "1 for the status of the newest directory sync (succeeded, failed, blocked, ...)",
        ["status"],
    )
    for value in SyncStatus.values:
        status.add_metric([value], 1.0 if last is not None and last.status == value else 0.0)
    yield status
    success = selectors.last_successful_sync()
    when = gauge(
        "warden_directory_sync_last_success_timestamp_seconds",
        "Unix time the newest successful directory sync finished (0: never)",
    )
    finished = success.finished_at if success is not None else None
    when.add_metric([], finished.timestamp() if finished else 0.0)
    yield when
    if last is None:
        return
    duration = gauge("warden_directory_sync_last_duration_seconds", "The newest sync's duration")
    duration.add_metric([], float(last.duration_s or 0.0))
    yield duration
    for field in SYNC_COUNTS:
        family = gauge(f"warden_directory_sync_last_{field}", f"The newest sync's {field}")
        family.add_metric([], float(getattr(last, field) or 0))
        yield family
