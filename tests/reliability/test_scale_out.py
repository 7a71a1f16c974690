"""Scale-out: two Celery workers in their own processes, on the real Redis broker and PostgreSQL,
reconcile a kubesim fleet; one is killed (SIGKILL) mid-run. Every cluster still ends exactly as
declared — nothing lost, nothing twice — and no cluster is ever reconciled by two workers at once.

kubesim runs in its own process (as in bench/reconcile_fleet.py), with latency on every request
so the fleet takes seconds and the kill lands while reconciles are under way. The fleet is queued
twice (a scheduled pass and an operator's click at once), so every cluster has two tasks racing
for it; the per-cluster lock lets one through at a time. Proofs: kubesim saw at most one request
in flight per cluster, and each cluster's recorded runs never overlap in time.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from access.choices import RoleScope
from access.models import Grant, Person, Role, RoleDefinition, Team
from clusters.models import Cluster, ReconcileRun
from tests.clusters.conftest import official_client
from tests.fixtures.services import needs_postgresql, needs_redis

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = 40
NAMESPACES = ("ns-001", "ns-002", "ns-003")
LATENCY_MS = 60
THREADS = 4
VISIBILITY_TIMEOUT_S = 8  # a dead worker's tasks return to the queue this soon


def control(base: str, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, method=method, data=data)
    import ssl

    context = ssl._create_unverified_context()  # noqa: S323 - the test's own throwaway CA
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return json.loads(response.read() or b"{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def declared_fleet() -> None:
    """sre views every cluster; payments develops in every ns-*; auditors hold a Warden role."""
    Role.objects.all().delete()  # the seeded catalogue; this fleet states its own
    viewer = Role.objects.create(name="viewer", display_name="Viewer", rank=10)
    RoleDefinition.objects.create(role=viewer, cluster_role="view", scope=RoleScope.CLUSTER)
    developer = Role.objects.create(name="developer", display_name="Developer", rank=20)
    RoleDefinition.objects.create(role=developer, cluster_role="edit")
    auditor = Role.objects.create(name="auditor", display_name="Auditor", rank=15)
    RoleDefinition.objects.create(
        role=auditor,
        scope=RoleScope.CLUSTER,
        rules=[{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]}],
    )
    teams = {
        name: Team.objects.create(dn=f"cn={name},ou=groups", name=name)
        for name in ("sre", "payments", "auditors")
    }
    for name in ("carol", "alice", "ivan"):
        Person.objects.create(dn=f"uid={name},ou=people", username=name)
    Grant.objects.create(team=teams["sre"], role=viewer)
    Grant.objects.create(team=teams["payments"], role=developer, namespaces=["ns-*"])
    Grant.objects.create(team=teams["auditors"], role=auditor)


def expected_objects() -> set[tuple[str, str, str, str]]:
    """(kind, namespace, name, subject or rules) of what every cluster must hold, exactly."""
    wanted = {
        ("ClusterRoleBinding", "", "warden-viewer", "Group:sre"),
        ("ClusterRoleBinding", "", "warden-auditor", "Group:auditors"),
        ("ClusterRole", "", "warden-auditor", "get,list events"),
    }
    wanted |= {("RoleBinding", ns, "warden-developer", "Group:payments") for ns in NAMESPACES}
    return wanted


def held_objects(sim: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    from kubernetes import client as k8s_client

    class Sim:  # what official_client needs of a kubesim cluster
        server_url = sim["server"]
        admin_token = sim["token"]
        ca_cert_pem = sim["ca"]

    rbac = k8s_client.RbacAuthorizationV1Api(official_client(Sim))
    selector = "app.kubernetes.io/managed-by=warden"
    found = set()
    for binding in rbac.list_cluster_role_binding(label_selector=selector).items:
        for subject in binding.subjects or []:
            found.add(("ClusterRoleBinding", "", binding.metadata.name, f"Group:{subject.name}"))
    for binding in rbac.list_role_binding_for_all_namespaces(label_selector=selector).items:
        for subject in binding.subjects or []:
            found.add(
                (
                    "RoleBinding",
                    binding.metadata.namespace,
                    binding.metadata.name,
                    f"{subject.kind}:{subject.name}",
                )
            )
    for role in rbac.list_cluster_role(label_selector=selector).items:
        for rule in role.rules:
            found.add(
                (
                    "ClusterRole",
                    "",
                    role.metadata.name,
                    f"{','.join(rule.verbs)} {','.join(rule.resources)}",
                )
            )
    return found


def most_at_once(requests: list[dict[str, Any]]) -> int:
    """The most requests the server was serving at one moment."""
    events = sorted(
        [(r["t"], 1) for r in requests] + [(r["end"], -1) for r in requests],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def overlapping(requests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of requests that were served at the same time (for the failure message)."""
    ordered = sorted(requests, key=lambda r: r["t"])
    return [
        (f"{a['agent']} {a['method']} {a['path']}", f"{b['agent']} {b['method']} {b['path']}")
        for a, b in itertools.combinations(ordered, 2)
        if b["t"] < a["end"]
    ][:5]


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=threads",
            f"--concurrency={THREADS}",
            f"--hostname={name}@%h",
            f"--queues={env['CELERY_TASK_DEFAULT_QUEUE']}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killed whole, like a machine lost
    )


def test_a_fleet_reconcile_survives_a_worker_killed_mid_run(tmp_path):
    needs_postgresql("two workers in their own processes share the database")
    needs_redis("two workers in their own processes share the queue")
    from celery import current_app

    from clusters.tasks import reconcile_fleet_task

    children: list[subprocess.Popen[bytes]] = []
    queue = f"warden-scaleout-{uuid.uuid4().hex[:8]}"
    conf = current_app.conf
    saved = (conf.task_always_eager, conf.task_default_queue)
    try:
        # --- kubesim in its own process, latency on every request --------------------------------
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubesim",
                "--count",
                str(CLUSTERS),
                "--namespaces",
                str(len(NAMESPACES)),
                "--latency-ms",
                str(LATENCY_MS),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        children.append(sim)
        ready = sim.stdout.readline().decode() if sim.stdout else ""
        assert "ready on" in ready, ready
        base = ready.split(" on ")[1].split()[0]
        sims = {c["name"]: c for c in control(base, "GET", "/_kubesim/clusters")["clusters"]}
        Cluster.objects.bulk_create(
            Cluster(
                name=name,
                environment="dev",
                tier="tier-2",
                api_url=c["server"],
                ca_bundle=c["ca"],
                token=c["token"],
            )
            for name, c in sims.items()
        )
        declared_fleet()

        # --- two workers, each in its own process (group) ---------------------------------------
        database_url = (
            os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + (connection.settings_dict["NAME"])
        )
        ports = [free_port(), free_port()]
        logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
        for i, name in enumerate(("a", "b")):
            env = {
                **os.environ,
                "DEBUG": "1",
                "DATABASE_URL": database_url,
                "CELERY_TASK_DEFAULT_QUEUE": queue,
                "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
                "WARDEN_VAR_DIR": str(tmp_path / f"var-{name}"),
                "WORKER_METRICS_PORT": str(ports[i]),
                "LOG_LEVEL": "INFO",
            }
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            children.append(start_worker(name, env, logs[i]))
        workers = children[1:]
        for log in logs:
            wait_for(lambda log=log: " ready." in log.read_text(errors="replace"), 60, log.name)

        # --- the fleet, queued twice at once ----------------------------------------------------
        conf.task_always_eager, conf.task_default_queue = False, queue
        started = timezone.now()
        reconcile_fleet_task.delay("schedule")
        reconcile_fleet_task.delay("operator")

        def done() -> set[int]:
            return set(
                ReconcileRun.objects.filter(started_at__gte=started, status="succeeded")
                .values_list("cluster_id", flat=True)
                .distinct()
            )

        ids = dict(Cluster.objects.values_list("name", "pk"))
        victim = workers[0]
        victim_pid = f"pid {victim.pid}"

        def victim_in_flight() -> str | None:
            """A cluster the victim has a request in flight on (kubesim's end is 0 until done)."""
            for name in sims:
                log = control(base, "GET", f"/_kubesim/clusters/{name}/requests")["requests"]
                if any(victim_pid in r["agent"] and not r["end"] for r in log):
                    return name
            return None

        # The kill must land inside a reconcile, not between two: find the victim with a request
        # in flight, freeze it (SIGSTOP: it can finish nothing more), and confirm that cluster's
        # reconcile is still unrecorded; if it slipped through meanwhile, thaw and look again.
        deadline, mid_run = time.monotonic() + 60, None
        while mid_run is None:
            assert time.monotonic() < deadline, "the victim never had a reconcile under way"
            candidate = victim_in_flight()
            if candidate is None:
                time.sleep(0.05)
                continue
            os.killpg(victim.pid, signal.SIGSTOP)
            killed_at, killed_epoch = timezone.now(), time.time()
            if ids[candidate] not in done():
                mid_run = candidate
            else:
                os.killpg(victim.pid, signal.SIGCONT)
        os.killpg(victim.pid, signal.SIGKILL)  # the whole worker, mid-reconcile of mid_run
        victim.wait(timeout=10)
        done_at_kill = done()
        assert ids[mid_run] not in done_at_kill
        assert len(done_at_kill) < CLUSTERS, "the kill came too late to interrupt anything"

        wait_for(lambda: len(done()) == CLUSTERS, 90, "every cluster reconciled after the kill")
        survivor_metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/metrics", timeout=10)
            .read()
            .decode()
        )
        for name in sims:  # reading back needs no latency
            control(base, "PUT", f"/_kubesim/clusters/{name}/faults", {"latency_s": 0})

        # --- every cluster holds exactly what was declared: nothing lost, nothing twice --------
        for name, sim_cluster in sims.items():
            assert held_objects(sim_cluster) == expected_objects(), name

        # --- no cluster was ever worked on by two workers at once --------------------------------
        interrupted = []
        for name in sims:
            log = control(base, "GET", f"/_kubesim/clusters/{name}/requests")
            # The victim's last request may still be served after it died (the server does not
            # know the client is gone): that one ghost aside, one request at a time, always.
            # (This test's own reads, by the official client, are not Warden's.)
            served = [
                r
                for r in log["requests"]
                if r["agent"].startswith("warden/")
                and not (victim_pid in r["agent"] and r["end"] > killed_epoch)
            ]
            assert most_at_once(served) == 1, (
                f"{name}: two reconciles overlapped on the cluster: {overlapping(served)}"
            )
            runs = list(
                ReconcileRun.objects.filter(cluster__name=name, started_at__gte=started)
                .order_by("started_at")
                .values_list("started_at", "finished_at")
            )
            for (_, finished), (next_start, _) in itertools.pairwise(runs):
                assert next_start >= finished, f"{name}: runs overlap"
            cluster_id = ids[name]
            touched_by_victim = any(victim_pid in r["agent"] for r in log["requests"])
            if touched_by_victim and cluster_id not in done_at_kill:
                interrupted.append(name)
                # finished by the surviving worker after the kill
                last = ReconcileRun.objects.filter(
                    cluster_id=cluster_id, status="succeeded"
                ).latest("finished_at")
                assert last.finished_at > killed_at
        # the kill did cut reconciles short, and their clusters were still reconciled
        assert mid_run in interrupted, interrupted

        # the survivor counted the tasks it ran, on its own metrics port
        succeeded = [
            float(line.rsplit(" ", 1)[1])
            for line in survivor_metrics.splitlines()
            if line.startswith("warden_celery_tasks_total{")
            and 'task="clusters.tasks.reconcile_cluster_task"' in line
            and 'state="SUCCESS"' in line
        ]
        assert succeeded and succeeded[0] > 0, survivor_metrics[:2000]
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
