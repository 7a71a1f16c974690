"""Read queries of the machine side: fleet overview and rollout status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import (
    Avg,
    Case,
    Count,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber, TruncHour
from django.utils import timezone

from access.choices import Environment, Tier
from access.fleet import ClusterPicker, PickerCluster
from access.models import Grant, Person
from access.selectors import access_of
from clusters.choices import ClusterState, ReconcileStatus
from clusters.models import (
    Cluster,
    DiscoveryRun,
    DiscoverySource,
    FleetReconcile,
    ReconcileRun,
)


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


def rollout_state(grant_id: int, run: ReconcileRun | None) -> tuple[str, str]:
    """Where a grant stands on one cluster after its newest reconcile: (state, detail)."""
    if run is None:
        return "pending", "not reconciled yet"
    if grant_id in (run.grants_in_force or []):
        return "in force", ""
    if str(grant_id) in (run.pending or {}):
        return "pending", "; ".join(run.pending[str(grant_id)])
    if run.status == ReconcileStatus.FAILED:
        return "failed", run.error[:300]
    return "pending", "awaiting reconcile"


# --- the fleet overview -----------------------------------------------------------------------

SPARKLINE_RUNS = 20


@dataclass
class FleetRow:
    """One cluster of the fleet page with its newest reconcile and recent durations."""

    cluster: Cluster
    latest: ReconcileRun | None = None
    durations: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def pending_count(self) -> int:
        return len(self.latest.pending or {}) if self.latest else 0

    @property
    def spark(self) -> dict[str, Any]:
        return sparkline(self.durations)


def environment_rank() -> Case:
    """dev < staging < prod, the order of the road to production (not the alphabet)."""
    return Case(
        *(When(environment=value, then=Value(rank)) for rank, value in enumerate(Environment)),
        default=Value(99),
        output_field=IntegerField(),
    )


def fleet_clusters(
    environment: str = "", tier: str = "", state: str = "", search: str = ""
) -> QuerySet[Cluster]:
    """The clusters the fleet page lists for these filters, by environment, tier and name."""
    clusters = Cluster.objects.all()
    if state == "all":
        pass
    elif state:
        clusters = clusters.filter(state=state)
    else:
        clusters = clusters.exclude(state=ClusterState.RETIRED)
    if environment:
        clusters = clusters.filter(environment=environment)
    if tier:
        clusters = clusters.filter(tier=tier)
    if search:
        clusters = clusters.filter(name__icontains=search)
    return clusters.annotate(env_rank=environment_rank()).order_by("env_rank", "tier", "name")


def fleet_rows(clusters: list[Cluster]) -> list[FleetRow]:
    """Rows for a page of clusters: one query for the recent runs of all of them."""
    rows = {c.pk: FleetRow(cluster=c) for c in clusters}
    if not rows:
        return []
    recent = (
        ReconcileRun.objects.filter(cluster_id__in=list(rows), dry_run=False)
        .exclude(status=ReconcileStatus.RUNNING)
        .annotate(
            position=Window(
                RowNumber(),
                partition_by=[F("cluster_id")],
                order_by=[F("started_at").desc(), F("id").desc()],
            )
        )
        .filter(position__lte=SPARKLINE_RUNS)
        .only("id", "cluster_id", "started_at", "status", "duration_s", "drift", "pending")
        .order_by("cluster_id", "position")
    )
    for run in recent:
        row = rows[run.cluster_id]
        if row.latest is None:
            row.latest = run
        row.durations.append((run.duration_s or 0.0, run.status == ReconcileStatus.FAILED))
    for row in rows.values():
        row.durations.reverse()  # oldest first, as a sparkline reads
    return list(rows.values())


def fleet_summary() -> dict[str, Any]:
    """Counts of live clusters per environment and tier, and per state (one query)."""
    counts = (
        Cluster.objects.values("environment", "tier", "state").annotate(n=Count("id")).order_by()
    )
    grid: dict[str, dict[str, int]] = {
        env: dict.fromkeys(Tier.values, 0) for env in Environment.values
    }
    states: dict[str, int] = dict.fromkeys(ClusterState.values, 0)
    for row in counts:
        states[row["state"]] = states.get(row["state"], 0) + row["n"]
        if row["state"] != ClusterState.RETIRED and row["environment"] in grid:
            grid[row["environment"]][row["tier"]] = (
                grid[row["environment"]].get(row["tier"], 0) + row["n"]
            )
    return {
        "grid": [
            (Environment(env).label, env, [(tier, grid[env][tier]) for tier in Tier.values])
            for env in Environment.values
        ],
        "tiers": Tier.choices,
        "states": states,
        "live": sum(n for s, n in states.items() if s != ClusterState.RETIRED),
    }


def pending_grants(run: ReconcileRun | None) -> list[dict[str, Any]]:
    """The grants a run left pending on its cluster, with the grant and the reasons."""

    if run is None or not run.pending:
        return []
    ids = [int(k) for k in run.pending]
    grants = {
        g.pk: g for g in Grant.objects.filter(pk__in=ids).select_related("role", "team", "person")
    }
    return [
        {"id": gid, "grant": grants.get(gid), "reasons": run.pending[str(gid)]}
        for gid in sorted(ids)
    ]


def sparkline(
    values: list[tuple[float, bool]], width: int = 120, height: int = 24
) -> dict[str, Any]:
    """Points of an inline SVG polyline of durations (oldest first), and failed runs' dots."""
    if not values:
        return {"points": "", "dots": [], "width": width, "height": height, "label": "no runs"}
    top = max(v for v, _ in values) or 1.0
    step = width / max(len(values) - 1, 1)
    pad = 2
    coords = [
        (round(i * step, 1), round(height - pad - (v / top) * (height - 2 * pad), 1))
        for i, (v, _) in enumerate(values)
    ]
    if len(coords) == 1:
        coords.append((float(width), coords[0][1]))
    durations = [v for v, _ in values]
    failed = sum(1 for _, bad in values if bad)
    label = f"last {len(values)} reconciles: {min(durations):.2f} to {max(durations):.2f} s" + (
        f", {failed} failed" if failed else ""
    )
    return {
        "points": " ".join(f"{x},{y}" for x, y in coords),
        "dots": [coords[i] for i, (_, bad) in enumerate(values) if bad],
        "width": width,
        "height": height,
        "label": label,
    }


def discovery_overview() -> list[tuple[DiscoverySource, DiscoveryRun | None, int]]:
    """Each discovery source with its newest run and how many live clusters it registered."""
    newest = DiscoveryRun.objects.filter(source=OuterRef("pk")).order_by("-started_at", "-id")
    sources = list(
        DiscoverySource.objects.annotate(
            run_id=Subquery(newest.values("id")[:1]),
            live=Count("clusters", filter=~Q(clusters__state=ClusterState.RETIRED)),
        )
    )
    runs = DiscoveryRun.objects.in_bulk([s.run_id for s in sources if s.run_id])
    return [(s, runs.get(s.run_id), s.live) for s in sources]


# --- progress of reconciles under way ---------------------------------------------------------

# A reconcile nobody has reported on for this long is not coming: the workers are down or busy.
PROGRESS_PATIENCE = timedelta(minutes=15)


@dataclass
class ReconcileProgress:
    """How a batch of reconciles asked for at one moment is going, from the runs since then."""

    since: datetime
    total: int
    succeeded: int = 0
    failed: int = 0
    # (cluster name, error) of each failed run, first ones only.
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def waiting(self) -> int:
        return self.total - self.done

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def stalled(self) -> bool:
        """Still waiting long after it was asked: stop watching and say so."""
        return not self.finished and timezone.now() - self.since > PROGRESS_PATIENCE

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.done / self.total)


def reconcile_progress(
    cluster_ids: list[int], since: datetime, failures_shown: int = 10
) -> ReconcileProgress:
    """The first run of each of these (still live) clusters since `since`: done, failed or not
    yet. Two queries, however many clusters."""
    live = dict(
        Cluster.objects.filter(pk__in=cluster_ids)
        .exclude(state=ClusterState.RETIRED)
        .values_list("id", "name")
    )
    progress = ReconcileProgress(since=since, total=len(live))
    runs = (
        ReconcileRun.objects.filter(cluster_id__in=list(live), dry_run=False, started_at__gte=since)
        .exclude(status__in=[ReconcileStatus.RUNNING, ReconcileStatus.SKIPPED])
        .order_by("started_at", "id")
        .values_list("cluster_id", "status", "error")
    )
    seen: set[int] = set()
    for cluster_id, status, error in runs:
        if cluster_id in seen:
            continue
        seen.add(cluster_id)
        if status == ReconcileStatus.FAILED:
            progress.failed += 1
            if len(progress.failures) < failures_shown:
                progress.failures.append((live[cluster_id], error[:200]))
        else:
            progress.succeeded += 1
    return progress


def latest_fleet_reconcile() -> tuple[FleetReconcile, ReconcileProgress] | None:
    """The newest fleet reconcile and how far it has come."""
    fleet = FleetReconcile.objects.select_related("requested_by").first()
    if fleet is None:
        return None
    return fleet, reconcile_progress(fleet.cluster_ids, fleet.requested_at)


# --- the fleet's reconciles over time -----------------------------------------------------------

HISTORY_HOURS = 24


@dataclass
class HistoryPoint:
    """The fleet's reconciles that began in one hour."""

    hour: Any
    runs: int = 0
    failed: int = 0
    drift: int = 0
    avg_s: float = 0.0
    max_s: float = 0.0


def fleet_history(hours: int = HISTORY_HOURS) -> list[HistoryPoint]:
    """One point per hour of the last `hours` (empty hours included): runs, failures, drift found,
    mean and longest duration. One grouped query, however large the fleet."""
    # Hours as TruncHour cuts them: in the current time zone (which may be off UTC by 30 min).
    now = timezone.localtime().replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(hours=hours - 1)
    rows = (
        ReconcileRun.objects.filter(dry_run=False, started_at__gte=first)
        .exclude(status=ReconcileStatus.RUNNING)
        .annotate(hour=TruncHour("started_at"))
        .values("hour")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=Q(status=ReconcileStatus.FAILED)),
            drift=Sum("drift"),
            avg_s=Avg("duration_s"),
            max_s=Max("duration_s"),
        )
        .order_by("hour")
    )
    by_hour = {row["hour"]: row for row in rows}
    points = []
    for i in range(hours):
        hour = first + timedelta(hours=i)
        row = by_hour.get(hour)
        if row is None:
            points.append(HistoryPoint(hour=hour))
        else:
            points.append(
                HistoryPoint(
                    hour=hour,
                    runs=row["runs"],
                    failed=row["failed"],
                    drift=row["drift"] or 0,
                    avg_s=float(row["avg_s"] or 0.0),
                    max_s=float(row["max_s"] or 0.0),
                )
            )
    return points


def history_chart(
    points: list[HistoryPoint], width: int = 720, height: int = 180
) -> dict[str, Any]:
    """Geometry of the fleet's history as an inline SVG: mean and longest reconcile duration as
    lines (left scale, seconds), drift found as bars (right scale), hours along the bottom.

    Server-rendered, so the page needs no script and no inline style (the CSP allows neither).
    """
    left, right, top, bottom = 44, 44, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_s = max((p.max_s for p in points), default=0.0) or 1.0
    top_drift = max((p.drift for p in points), default=0) or 1
    step = plot_w / max(len(points) - 1, 1)
    bar_w = max(2.0, step * 0.5)

    def x(i: int) -> float:
        return round(left + i * step, 1)

    def y_s(value: float) -> float:
        return round(top + plot_h - value / top_s * plot_h, 1)

    with_runs = [(i, p) for i, p in enumerate(points) if p.runs]

    def bar_span(i: int) -> tuple[float, float]:  # centred on its hour, kept inside the plot
        start = max(float(left), x(i) - bar_w / 2)
        return round(start, 1), round(min(float(left + plot_w), x(i) + bar_w / 2) - start, 1)

    bars = [
        {
            "x": bar_span(i)[0],
            "y": round(top + plot_h - p.drift / top_drift * plot_h, 1),
            "w": bar_span(i)[1],
            "h": round(p.drift / top_drift * plot_h, 1),
            "title": f"{p.hour:%H:00}: drift {p.drift}",
        }
        for i, p in with_runs
        if p.drift
    ]
    runs = sum(p.runs for p in points)
    failed = sum(p.failed for p in points)
    drift = sum(p.drift for p in points)
    label = (
        f"Reconciles of the last {len(points)} hours: {runs} runs, {failed} failed, drift "
        f"found {drift} times; longest {top_s if runs else 0:.2f} s."
        if runs
        else f"No reconcile in the last {len(points)} hours."
    )
    ticks = [0, len(points) // 2, len(points) - 1] if points else []
    return {
        "width": width,
        "height": height,
        "plot": {"x": left, "y": top, "w": plot_w, "h": plot_h, "bottom": top + plot_h},
        "avg": " ".join(f"{x(i)},{y_s(p.avg_s)}" for i, p in with_runs),
        "max": " ".join(f"{x(i)},{y_s(p.max_s)}" for i, p in with_runs),
        "failed": [
            {"x": x(i), "y": y_s(p.max_s), "title": f"{p.hour:%H:00}: {p.failed} failed"}
            for i, p in with_runs
            if p.failed
        ],
        "bars": bars,
        "y_labels": [
            {"y": top + 4, "text": f"{top_s:.2f} s" if runs else "", "drift": str(top_drift)},
            {"y": top + plot_h, "text": "0 s", "drift": "0"},
        ],
        "x_labels": [{"x": x(i), "text": f"{points[i].hour:%H:00}"} for i in ticks],
        "label": label,
        "empty": not runs,
        "totals": {"runs": runs, "failed": failed, "drift": drift},
    }


# --- where a person holds access (the CLI's kubeconfig) -----------------------------------------


@dataclass(frozen=True)
class ReachableCluster:
    """A live cluster where a person holds access: what a kubeconfig entry for it needs."""

    cluster: Cluster
    # Where the person holds access there; empty = cluster-wide somewhere.
    namespaces: tuple[str, ...]
    username: str
    user_exec: dict[str, Any] | None


def reachable_clusters(person: Person) -> list[ReachableCluster]:
    """The live clusters the person's grants in force reach, by name, with their namespaces."""
    where: dict[str, set[str]] = {}
    cluster_wide: set[str] = set()
    for held in access_of(person):
        for reach in held.clusters:
            where.setdefault(reach.cluster, set()).update(reach.namespaces)
            if not reach.namespaces:
                cluster_wide.add(reach.cluster)
    clusters = Cluster.objects.filter(name__in=where).exclude(state=ClusterState.RETIRED)
    return [
        ReachableCluster(
            cluster=cluster,
            namespaces=() if cluster.name in cluster_wide else tuple(sorted(where[cluster.name])),
            username=f"{cluster.user_prefix}{person.username}",
            user_exec=kubeconfig_user_exec(cluster.name, person.username),
        )
        for cluster in clusters.order_by("name")
    ]


def kubeconfig_user_exec(cluster: str, username: str) -> dict[str, Any] | None:
    """WARDEN_KUBECONFIG_USER_EXEC with {cluster} and {username} filled in (None when unset)."""
    template = settings.WARDEN_KUBECONFIG_USER_EXEC
    if not template:
        return None

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{cluster}", cluster).replace("{username}", username)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return cast(dict[str, Any], fill(template))


def live_cluster_names(limit: int) -> list[str]:
    """The first `limit` names of the live (not retired) clusters, in order."""
    live = Cluster.objects.exclude(state=ClusterState.RETIRED)
    return list(live.order_by("name").values_list("name", flat=True)[:limit])


# --- the request page's cluster picker --------------------------------------------------------


def cluster_picker(
    environments: Sequence[str],
    tiers: Sequence[str],
    search: str,
    selected: Iterable[str],
    limit: int,
) -> ClusterPicker:
    """Live clusters of the chosen environments and tiers that match the search, the ticked
    ones first: three queries, however large the fleet."""
    live = Cluster.objects.exclude(state=ClusterState.RETIRED)
    chosen = set(selected)
    matching = live
    if environments:
        matching = matching.filter(environment__in=environments)
    if tiers:
        matching = matching.filter(tier__in=tiers)
    search = search.strip()
    if search:
        matching = matching.filter(name__icontains=search)
    ordered = matching.annotate(env_rank=environment_rank()).order_by("env_rank", "tier", "name")
    fields = ("name", "environment", "tier")
    shown = list(ordered.values_list(*fields)[:limit])
    total = matching.count() if len(shown) == limit else len(shown)
    ticked = list(live.filter(name__in=chosen).order_by("name").values_list(*fields))
    rows = [PickerCluster(name, env, tier, checked=True) for name, env, tier in ticked]
    rows += [
        PickerCluster(name, env, tier, checked=False)
        for name, env, tier in shown
        if name not in chosen
    ]
    return ClusterPicker(
        clusters=rows, more=max(total - len(shown), 0), search=search, matching=total
    )
