"""Benchmark: reconcile a fleet of kubesim clusters with real Celery workers.

kubesim runs in its own process with CLUSTERS clusters, each with NAMESPACES namespaces and
LATENCY ms added to every request. Four roles granted over every namespace give each cluster
4 x NAMESPACES managed RoleBindings. Celery workers (separate processes, Redis broker,
PostgreSQL) do the work. Measured:
  cold_s              fleet reconcile from empty (every binding created)
  noop_s              the same with nothing to change (API calls per cluster: kubesim's counters)
  change_visible_s    a new grant reaching 50 clusters -> in force on all 50
  leaver_revoked_s    a person removed from a team in slapd -> sync -> gone on every cluster
Needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL; default: `make services`).
Runs alone: `.venv/bin/python bench/reconcile_fleet.py [--clusters 1000]`; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "dc=fleet,dc=test"
# bench/requests.py would stand in for the `requests` library the kubernetes client imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.harness import control, fleet, log, wait_until  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50, help="bindings = 4 x namespaces")
    parser.add_argument("--latency-ms", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=24, help="threads per worker")
    args = parser.parse_args()

    log(
        f"starting kubesim: {args.clusters} clusters x {args.namespaces} namespaces, "
        f"{args.latency_ms} ms latency"
    )
    kubesim = ["--count", str(args.clusters), "--namespaces", str(args.namespaces)]
    kubesim += ["--latency-ms", str(args.latency_ms)]
    with fleet("fleet", kubesim, args.workers, args.concurrency) as (base, _pids):
        figures = measure(args, base)
    print(json.dumps(figures), flush=True)


def measure(args: argparse.Namespace, base: str) -> dict:
    from access.localslapd import LocalSlapd, base_ldif, ssha
    from access.models import Grant, Role, RoleDefinition, Team
    from access.services import grant_access, sync_directory
    from clusters.models import Cluster, ReconcileRun
    from clusters.tasks import reconcile_fleet_task

    listing = control(base, "GET", "/_kubesim/clusters")["clusters"]
    clusters = []
    for i, c in enumerate(sorted(listing, key=lambda c: c["name"])):
        slice_ = "a" if i < 50 else ("b" if i < 100 else "rest")
        clusters.append(
            Cluster(
                name=c["name"],
                environment="dev",
                tier="tier-2",
                api_url=c["server"],
                token=c["token"],
                labels={"slice": slice_},
                bind_groups=slice_ != "b",
            )
        )
    Cluster.objects.bulk_create(clusters, batch_size=500)
    log(f"registered {len(clusters)} clusters")

    # a directory with the team whose member will leave
    slapd = LocalSlapd(Path(os.environ["WARDEN_VAR_DIR"]) / "slapd", suffix="dc=fleet,dc=test")
    slapd.configure()
    people = "".join(
        f"\ndn: uid=p{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: p{i}\n"
        f"cn: p{i}\nsn: p\nuserPassword: {ssha('x')}\n"
        for i in range(20)
    )
    members = "".join(f"member: uid=p{i},ou=people,dc=fleet,dc=test\n" for i in range(20))
    slapd.load(
        base_ldif("dc=fleet,dc=test", "cn=warden,ou=services,dc=fleet,dc=test", "pw")
        + people
        + f"\ndn: cn=platform,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: platform\n"
        + members
    )
    from django.conf import settings

    settings.WARDEN_DIRECTORY.update(
        URI=slapd.start(),
        BIND_DN="cn=warden,ou=services,dc=fleet,dc=test",
        BIND_PASSWORD="pw",
        USER_BASE_DN="ou=people,dc=fleet,dc=test",
        GROUP_BASE_DN="ou=groups,dc=fleet,dc=test",
    )
    try:
        assert sync_directory().status == "succeeded"
        team = Team.objects.get(name="platform")
        auditor = Role.objects.create(name="auditor", display_name="Auditor", rank=15)
        RoleDefinition.objects.create(
            role=auditor,
            rules=[{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]}],
        )
        for role in Role.objects.filter(name__in=["viewer", "developer", "operator", "auditor"]):
            Grant.objects.create(team=team, role=role, namespaces=["ns-*"])
        total = len(clusters)

        def runs_done(since: float, ids=None) -> int:  # type: ignore[no-untyped-def]
            qs = ReconcileRun.objects.filter(started_at__gte=_ts(since), status="succeeded")
            if ids is not None:
                qs = qs.filter(cluster_id__in=ids)
            return qs.values("cluster_id").distinct().count()

        log("cold reconcile")
        t0 = time.time()
        reconcile_fleet_task.delay("schedule")
        cold_s = wait_until(lambda: runs_done(t0) >= total, 1800, "the cold reconcile")
        created = sum(
            ReconcileRun.objects.filter(started_at__gte=_ts(t0)).values_list("created", flat=True)
        )
        log(f"cold: {cold_s:.1f}s, {created} objects created ({created / total:.0f} per cluster)")

        for c in listing:
            control(base, "DELETE", f"/_kubesim/clusters/{c['name']}/counters")
        log("no-change reconcile")
        t1 = time.time()
        reconcile_fleet_task.delay("schedule")
        noop_s = wait_until(lambda: runs_done(t1) >= total, 1800, "the no-change reconcile")
        calls = sum(
            row["count"]
            for c in listing
            for row in control(base, "GET", f"/_kubesim/clusters/{c['name']}/counters")["counters"]
        )
        writes = sum(
            ReconcileRun.objects.filter(started_at__gte=_ts(t1)).values_list("created", flat=True)
        )
        log(f"no-change: {noop_s:.1f}s, {calls / total:.2f} API calls per cluster, {writes} writes")

        log("a grant change reaching 50 clusters")
        slice_a = list(Cluster.objects.filter(labels__slice="a").values_list("id", flat=True))
        t2 = time.time()
        newcomers = Team.objects.get(name="platform")
        grant = grant_access(
            role=Role.objects.get(name="admin"), team=newcomers, cluster_selector={"slice": "a"}
        )
        change_s = wait_until(
            lambda: (
                ReconcileRun.objects.filter(
                    started_at__gte=_ts(t2),
                    cluster_id__in=slice_a,
                    grants_in_force__contains=[grant.pk],
                )
                .values("cluster_id")
                .distinct()
                .count()
                >= len(slice_a)
            ),
            600,
            "the grant on 50 clusters",
        )
        log(f"grant visible on {len(slice_a)} clusters in {change_s:.2f}s")

        log("a leaver: removed from the team in the directory")
        import ldap

        conn = ldap.initialize(settings.WARDEN_DIRECTORY["URI"])
        conn.simple_bind_s(slapd.admin_dn, slapd.admin_password)
        slice_b = list(Cluster.objects.filter(labels__slice="b").values_list("id", flat=True))
        t3 = time.time()
        conn.modify_s(
            "cn=platform,ou=groups,dc=fleet,dc=test",
            [(ldap.MOD_DELETE, "member", [b"uid=p0,ou=people,dc=fleet,dc=test"])],
        )
        assert sync_directory().status == "succeeded"
        leaver_s = wait_until(
            lambda: runs_done(t3, slice_b) >= len(slice_b), 600, "the leaver's revocation"
        )
        leaver_s = time.time() - t3
        log(f"leaver revoked on {len(slice_b)} expand-mode clusters in {leaver_s:.2f}s")
    finally:
        slapd.destroy()
    return {
        "clusters": total,
        "bindings_per_cluster": round(created / total),
        "latency_ms": args.latency_ms,
        "workers": f"{args.workers}x{args.concurrency} threads",
        "cold_s": round(cold_s, 2),
        "noop_s": round(noop_s, 2),
        "noop_calls_per_cluster": round(calls / total, 2),
        "noop_writes": writes,
        "change_visible_s": round(change_s, 2),
        "leaver_revoked_s": round(leaver_s, 2),
    }


def _ts(epoch: float):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


if __name__ == "__main__":
    main()
