"""Benchmark: rotate the tokens of 10,000 service accounts across 500 kubesim clusters.

kubesim runs in its own process with CLUSTERS clusters and LATENCY ms added to every request.
ACCOUNTS managed service accounts are spread evenly over them, each delivering its token to a
consumer Secret on its own cluster, with no grace period (so one rotation also revokes the
previous generation). Celery workers (separate processes, Redis broker, PostgreSQL) do the work,
fanned out by the same beat task production runs. Measured:
  issue_s             first generation for every account (bound Secret, TokenRequest, delivery)
  batch_s             a full rotation of every account: issue N+1, deliver, activate, revoke N
  calls_per_rotation  API calls per rotation in that batch, counted by kubesim
  cpu_ms_per_rotation CPU the workers and kubesim spent per rotation (what a shared machine's
                      wall time hides); also split into kubesim's and the workers', and the
                      CPU of the PostgreSQL backends serving the workers
Needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL; default: `make services`).
Runs alone: `.venv/bin/python bench/rotation.py [--accounts 10000 --clusters 500]`; the last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/requests.py would shadow the requests package the kubernetes client imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.harness import control, fleet, log, wait_until  # noqa: E402

POLL_S = 0.25  # the progress counts scan every account's generations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--latency-ms", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    args = parser.parse_args()

    log(f"starting kubesim: {args.clusters} clusters, {args.latency_ms} ms latency")
    kubesim = ["--count", str(args.clusters), "--latency-ms", str(args.latency_ms)]
    with fleet("rotation", kubesim, args.workers, args.concurrency) as (base, pids):
        figures = measure(args, base, pids)
    print(json.dumps(figures), flush=True)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes (kubesim, the workers)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def database_cpu() -> dict[int, float]:
    """CPU time so far of each PostgreSQL backend serving the bench's database (the workers'
    connections), by pid; {} on another database or when the backends cannot be read."""
    import psutil
    from django.db import connection

    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
    found = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found[pid] = times.user + times.system
    return found


def measure(args: argparse.Namespace, base: str, pids: list[int]) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    from access.models import Role, Team
    from clusters.choices import DeliveryKind, GenerationState
    from clusters.models import (
        Cluster,
        DeliveryTarget,
        ManagedServiceAccount,
        ReconcileRun,
        RotationRun,
        TokenGeneration,
    )
    from clusters.tasks import reconcile_fleet_task, rotate_due_service_accounts_task

    listing = sorted(
        control(base, "GET", "/_kubesim/clusters")["clusters"], key=lambda c: c["name"]
    )
    Cluster.objects.bulk_create(
        [
            Cluster(
                name=c["name"],
                environment="dev",
                tier="tier-2",
                api_url=c["server"],
                token=c["token"],
            )
            for c in listing
        ],
        batch_size=500,
    )
    clusters = list(Cluster.objects.order_by("name"))
    total = args.accounts
    team = Team.objects.create(dn="cn=delivery,ou=groups,dc=bench", name="delivery")
    developer = Role.objects.get(name="developer")
    now = timezone.now()
    accounts = [
        ManagedServiceAccount(
            name=f"app-{i:05d}",
            namespace="default",
            owner_team=team,
            clusters=[clusters[i % len(clusters)].name],
            rotation_period=timedelta(days=1),
            grace_period=timedelta(0),
            token_lifetime=timedelta(days=2),
            show_to_owner=False,
            next_rotation_at=now,
        )
        for i in range(total)
    ]
    ManagedServiceAccount.objects.bulk_create(accounts, batch_size=1000)
    accounts = list(ManagedServiceAccount.objects.order_by("id"))
    ManagedServiceAccount.roles.through.objects.bulk_create(
        [
            ManagedServiceAccount.roles.through(managedserviceaccount=a, role=developer)
            for a in accounts
        ],
        batch_size=2000,
    )
    by_name = {c.name: c for c in clusters}
    DeliveryTarget.objects.bulk_create(
        [
            DeliveryTarget(
                account=a,
                kind=DeliveryKind.SECRET,
                cluster=by_name[a.clusters[0]],
                namespace="default",
                secret_name=f"{a.name}-kubeconfig",
            )
            for a in accounts
        ],
        batch_size=2000,
    )
    log(f"declared {total} service accounts on {len(clusters)} clusters")

    log("reconcile: every ServiceAccount and its binding onto the clusters")
    t0 = time.time()
    reconcile_fleet_task.delay("change")
    wait_until(
        lambda: ReconcileRun.objects.filter(status="succeeded").count() >= len(clusters),
        1800,
        "the reconcile",
        lambda: (
            f"  {ReconcileRun.objects.filter(status='succeeded').count()} / {len(clusters)} "
            f"clusters reconciled, {ReconcileRun.objects.filter(status='failed').count()} failed"
        ),
        poll_s=POLL_S,
    )
    log(f"reconciled in {time.time() - t0:.1f}s")

    def done(number: int) -> int:
        return TokenGeneration.objects.filter(number=number, state=GenerationState.ACTIVE).count()

    def failures() -> int:
        return RotationRun.objects.filter(status="failed").count()

    log("first generation for every account")
    rotate_due_service_accounts_task.delay()
    issue_s = wait_until(
        lambda: done(1) >= total,
        1800,
        "the first generation",
        lambda: f"  {done(1)} / {total} issued, {failures()} failed attempts",
        poll_s=POLL_S,
    )
    log(f"first generation: {issue_s:.1f}s ({total / issue_s:.0f} accounts/s)")

    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda c: control(base, "DELETE", f"/_kubesim/clusters/{c['name']}/counters"),
                listing,
            )
        )
    failed_before = failures()
    log("rotation of every account (issue, deliver, activate, revoke the previous one)")
    ManagedServiceAccount.objects.update(next_rotation_at=timezone.now())
    cpu_before = cpu_seconds(pids)
    sim_cpu_before = cpu_seconds(pids[:1])  # pids[0] is kubesim, the others the workers
    db_cpu_before = database_cpu()
    # Celery closes a task's database connection when it ends, so backends come and go:
    # sample them as the batch runs (CPU a backend spends after its last sample is missed).
    db_cpu_seen = dict(db_cpu_before)

    def batch_done() -> bool:
        db_cpu_seen.update(database_cpu())
        return (
            done(2) >= total
            and TokenGeneration.objects.filter(number=1, state=GenerationState.REVOKED).count()
            >= total
        )

    rotate_due_service_accounts_task.delay()
    batch_s = wait_until(
        batch_done,
        1800,
        "the rotation batch",
        lambda: f"  {done(2)} / {total} rotated, {failures() - failed_before} failed attempts",
        poll_s=POLL_S,
    )
    cpu_s = cpu_seconds(pids) - cpu_before
    sim_cpu_s = cpu_seconds(pids[:1]) - sim_cpu_before
    db_cpu_seen.update(database_cpu())
    db_cpu_s = sum(t - db_cpu_before.get(pid, 0.0) for pid, t in db_cpu_seen.items())
    with ThreadPoolExecutor(16) as pool:
        counters = list(
            pool.map(
                lambda c: control(base, "GET", f"/_kubesim/clusters/{c['name']}/counters"), listing
            )
        )
    calls = sum(row["count"] for c in counters for row in c["counters"])
    by_verb: dict[str, int] = {}
    for c in counters:
        for row in c["counters"]:
            key = f"{row['verb']} {row['resource']}"
            by_verb[key] = by_verb.get(key, 0) + row["count"]
    runs = RotationRun.objects.filter(generation__number=2, status="succeeded")
    durations = sorted(runs.values_list("duration_s", flat=True))
    p50 = durations[len(durations) // 2] if durations else 0
    p99 = durations[int(len(durations) * 0.99)] if durations else 0
    log(
        f"rotation batch: {batch_s:.1f}s ({total / batch_s:.0f} rotations/s), "
        f"{calls / total:.2f} API calls per rotation: {by_verb}"
    )
    return {
        "accounts": total,
        "clusters": len(clusters),
        "latency_ms": args.latency_ms,
        "workers": f"{args.workers}x{args.concurrency} threads",
        "issue_s": round(issue_s, 2),
        "batch_s": round(batch_s, 2),
        "rotations_per_s": round(total / batch_s, 1),
        "calls_per_rotation": round(calls / total, 2),
        "calls_by_kind": by_verb,
        # CPU the workers and kubesim spent on the batch (PostgreSQL and Redis not counted):
        # on a shared machine, wall time says more about the neighbours than about Warden.
        "batch_cpu_s": round(cpu_s, 1),
        "cpu_ms_per_rotation": round(cpu_s / total * 1000, 2),
        # of which kubesim's (the emulated API servers) and the workers' (Warden)
        "kubesim_cpu_ms_per_rotation": round(sim_cpu_s / total * 1000, 2),
        "worker_cpu_ms_per_rotation": round((cpu_s - sim_cpu_s) / total * 1000, 2),
        # PostgreSQL's backends serving the workers, sampled (not in cpu_ms_per_rotation;
        # a lower bound: a backend's CPU after its last sample is missed)
        "database_cpu_ms_per_rotation": round(db_cpu_s / total * 1000, 2),
        "rotation_p50_s": p50,
        "rotation_p99_s": p99,
        "failed_attempts": failures() - failed_before,
    }


if __name__ == "__main__":
    main()
