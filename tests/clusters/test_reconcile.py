"""The reconciler against kubesim over HTTPS with the official client."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from kubernetes import client as k8s_client
from rest_framework.test import APIClient

from access.models import AuditEvent, Grant
from clusters import services
from clusters.choices import ClusterState, ReconcileStatus
from clusters.compiler import MANAGED_BY_LABEL
from clusters.models import ReconcileRun
from tests.fixtures.services import needs_postgresql

pytestmark = pytest.mark.django_db


def binding_body(name, role, subjects, namespace=None, managed=False):
    meta = k8s_client.V1ObjectMeta(
        name=name,
        namespace=namespace,
        labels={MANAGED_BY_LABEL: "warden"} if managed else None,
    )
    ref = k8s_client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role)
    subjects = [
        k8s_client.RbacV1Subject(kind="User", name=s, api_group="rbac.authorization.k8s.io")
        for s in subjects
    ]
    if namespace:
        return k8s_client.V1RoleBinding(metadata=meta, role_ref=ref, subjects=subjects)
    return k8s_client.V1ClusterRoleBinding(metadata=meta, role_ref=ref, subjects=subjects)


def test_it_writes_the_compiled_bindings_into_an_empty_cluster(
    make_cluster, catalogue, people, rbac
):
    # given
    cluster, sim = make_cluster(environment="dev")
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    # when
    run = services.reconcile_cluster(cluster.pk)
    # then
    assert run.status == ReconcileStatus.SUCCEEDED, run.error
    assert run.created == 2
    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
    assert rbac.subjects(sim, "warden-developer", "default") == ["carol"]
    binding = rbac.bindings(sim, "default")["warden-developer"]
    assert binding.role_ref.name == "edit"
    assert binding.metadata.labels[MANAGED_BY_LABEL] == "warden"


def test_a_reconcile_with_nothing_to_do_only_lists(make_cluster, catalogue, people):
    cluster, _sim = make_cluster()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    run = services.reconcile_cluster(cluster.pk)

    assert (run.created, run.updated, run.recreated, run.deleted) == (0, 0, 0, 0)
    assert run.api_calls == 3  # one LIST per managed kind, no writes


def test_drift_is_repaired_and_counted(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)
    api = rbac.api(sim)
    # someone edits one binding and deletes another by hand
    edited = api.read_cluster_role_binding("warden-viewer")
    edited.subjects[0].name = "intruders"
    api.replace_cluster_role_binding("warden-viewer", edited)
    api.delete_namespaced_role_binding("warden-developer", "default")

    run = services.reconcile_cluster(cluster.pk)

    assert run.drift == 2
    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
    assert rbac.subjects(sim, "warden-developer", "default") == ["carol"]


def test_unmanaged_bindings_are_never_touched(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    api = rbac.api(sim)
    api.create_cluster_role_binding(binding_body("hand-made", "view", ["alice"]))
    # even one with Warden's name, but without Warden's label
    api.create_cluster_role_binding(binding_body("warden-viewer", "admin", ["mallory"]))
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])

    run = services.reconcile_cluster(cluster.pk)

    assert rbac.subjects(sim, "hand-made") == ["alice"]
    assert rbac.subjects(sim, "warden-viewer") == ["mallory"]
    # reported as a conflict for a person (tests/clusters/test_name_conflicts.py)
    assert run.conflicts == ["ClusterRoleBinding warden-viewer"]


def test_a_leaver_loses_access(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster(bind_groups=False)
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    assert rbac.subjects(sim, "warden-viewer") == ["alice", "bob"]

    people["bob"].is_active = False
    people["bob"].save()
    services.reconcile_cluster(cluster.pk)

    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


def test_when_the_last_subject_goes_the_binding_goes(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    grant = Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    grant.revoked_at = timezone.now()
    grant.save()
    run = services.reconcile_cluster(cluster.pk)

    assert run.deleted == 1
    assert "warden-viewer" not in rbac.bindings(sim)


def test_an_expired_grant_is_removed(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    grant = Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    services.reconcile_cluster(cluster.pk)

    assert "warden-viewer" not in rbac.bindings(sim)


def test_a_changed_role_ref_is_deleted_and_recreated(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)

    catalogue["developer"].definitions.filter(environment="").update(cluster_role="admin")
    run = services.reconcile_cluster(cluster.pk)

    assert run.recreated == 1, run.error
    assert rbac.bindings(sim, "default")["warden-developer"].role_ref.name == "admin"


def test_a_missing_namespace_is_pending_then_bound_when_it_appears(
    make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    grant = Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=["checkout"]
    )

    run = services.reconcile_cluster(cluster.pk)

    assert run.status == ReconcileStatus.SUCCEEDED
    assert run.pending == {str(grant.pk): ["namespace 'checkout' does not exist yet"]}
    rbac.core(sim).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="checkout"))
    )
    run = services.reconcile_cluster(cluster.pk)
    assert run.pending == {}
    assert rbac.subjects(sim, "warden-developer", "checkout") == ["alice"]


def test_an_unreachable_cluster_is_recorded_and_revokes_nothing(
    make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)

    sim.faults.unreachable = True
    try:
        run = services.reconcile_cluster(cluster.pk)
    finally:
        sim.faults.unreachable = False

    cluster.refresh_from_db()
    assert run.status == ReconcileStatus.FAILED
    assert cluster.state == ClusterState.UNREACHABLE
    assert "unreachable" in cluster.last_error
    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


def test_throttling_and_server_errors_are_retried(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    sim.faults.throttle(n=2, retry_after=0)

    run = services.reconcile_cluster(cluster.pk)

    assert run.status == ReconcileStatus.SUCCEEDED, run.error
    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


@pytest.mark.django_db(transaction=True)
def test_two_reconciles_at_once_write_each_object_once(make_cluster, catalogue, people, rbac):
    needs_postgresql("concurrent writers need PostgreSQL's row locks (CI runs it)")
    cluster, sim = make_cluster()
    for ns in ("default",):
        Grant.objects.create(person=people["alice"], role=catalogue["developer"], namespaces=[ns])
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    results = []

    def work():
        try:
            results.append(services.reconcile_cluster(cluster.pk))
        finally:
            connection.close()  # each thread has its own; leave none open at teardown

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
    assert rbac.subjects(sim, "warden-developer", "default") == ["alice"]
    assert len(rbac.bindings(sim, "default")) == 1
    assert results.count(None) == 1  # the second found the cluster's lock held
    assert sum(r.created for r in ReconcileRun.objects.filter(cluster=cluster)) == 2


def test_a_conflict_on_update_is_re_read_and_retried(make_cluster, catalogue, people, rbac):
    from clusters import k8s
    from clusters.reconcile import read_actual, update_object

    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    client = k8s.client_for(services.endpoint_for(cluster))
    stale = read_actual(client)[("ClusterRoleBinding", "", "warden-viewer")]
    # someone else writes after Warden listed: Warden's resourceVersion is now stale
    api = rbac.api(sim)
    edited = api.read_cluster_role_binding("warden-viewer")
    edited.subjects[0].name = "intruder"
    api.replace_cluster_role_binding("warden-viewer", edited)
    wanted = {**stale, "subjects": [{**stale["subjects"][0], "name": "alice"}]}

    update_object(client, wanted, stale)

    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


def test_an_object_whose_label_was_removed_after_listing_is_not_deleted(
    make_cluster, catalogue, people, rbac
):
    from clusters import k8s
    from clusters.k8s import KubeError
    from clusters.reconcile import delete_object, read_actual

    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    client = k8s.client_for(services.endpoint_for(cluster))
    listed = read_actual(client)[("ClusterRoleBinding", "", "warden-viewer")]
    api = rbac.api(sim)
    adopted = api.read_cluster_role_binding("warden-viewer")
    adopted.metadata.labels = {"owner": "platform-team"}  # someone adopts it
    api.replace_cluster_role_binding("warden-viewer", adopted)

    with pytest.raises(KubeError, match="not managed by Warden"):
        delete_object(client, ("ClusterRoleBinding", "", "warden-viewer"), listed)

    assert rbac.subjects(sim, "warden-viewer") == ["alice"]


def test_shadow_access_is_reported_and_left_alone(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    api = rbac.api(sim)
    # given bindings made by hand: one names a directory person, one a team, one a robot
    api.create_cluster_role_binding(binding_body("alice-admin", "cluster-admin", ["alice"]))
    team_binding = binding_body("pay-edit", "edit", [], namespace="default")
    team_binding.subjects = [
        k8s_client.RbacV1Subject(
            kind="Group", name="payments", api_group="rbac.authorization.k8s.io"
        )
    ]
    api.create_namespaced_role_binding("default", team_binding)
    api.create_cluster_role_binding(binding_body("ci-robot", "view", ["ci-bot"]))
    Grant.objects.create(person=people["bob"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)  # Warden's own binding is not shadow access

    found = services.scan_shadow_access(cluster.pk)

    assert [(f["name"], f["role"], f["subjects"]) for f in found] == [
        ("alice-admin", "cluster-admin", ["User:alice"]),
        ("pay-edit", "edit", ["Group:payments"]),
    ]
    cluster.refresh_from_db()
    assert cluster.shadow_access == found and cluster.shadow_scanned_at is not None
    assert rbac.subjects(sim, "alice-admin") == ["alice"]  # reported, never touched
    events = AuditEvent.objects.filter(action="cluster.shadow_access_found")
    assert events.count() == 1
    services.scan_shadow_access(cluster.pk)
    assert events.count() == 1  # nothing new, nothing more to say


def test_a_reconcile_that_writes_is_audited(make_cluster, catalogue, people):
    cluster, _ = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])

    services.reconcile_cluster(cluster.pk)
    services.reconcile_cluster(cluster.pk)  # nothing to do: nothing to audit

    event = AuditEvent.objects.get(action="cluster.reconciled")
    assert event.object_id == str(cluster.pk)
    assert event.after["created"] == 1
    assert event.after["objects"] == {"create": ["ClusterRoleBinding//warden-viewer"]}


@pytest.mark.django_db(transaction=True)
def test_two_reconciles_at_once_after_a_revoke_lose_no_delete(
    make_cluster, catalogue, people, rbac
):
    needs_postgresql("concurrent writers need PostgreSQL (CI runs it)")
    cluster, sim = make_cluster()
    grant = Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    kept = Grant.objects.create(
        person=people["bob"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)
    Grant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now())
    barrier = threading.Barrier(2)
    results = []

    def work():
        try:
            barrier.wait()
            results.append(services.reconcile_cluster(cluster.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # whichever ran second (or was skipped), one more pass finds nothing left to do
    final = services.reconcile_cluster(cluster.pk)

    assert "warden-viewer" not in rbac.bindings(sim)
    assert rbac.subjects(sim, "warden-developer", "default") == ["bob"]
    assert sum(r.deleted for r in results if r) == 1
    assert (final.created, final.updated, final.deleted) == (0, 0, 0)
    assert kept.pk in final.grants_in_force


def test_a_digest_depends_on_the_values_alone():
    from clusters.reconcile import digest

    binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "warden-viewer", "namespace": "ns", "labels": {"a": "b"}},
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": name} for name in ("alice", "bob")],
    }
    # the same values built apart (another process reads them back from JSON) digest alike
    assert digest(binding) == digest(json.loads(json.dumps(binding)))
    changed = json.loads(json.dumps(binding))
    changed["subjects"][1]["name"] = "carol"
    assert digest(changed) != digest(binding)


def test_an_operator_runs_the_shadow_access_scan_by_command(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    rbac.api(sim).create_cluster_role_binding(
        binding_body("alice-admin", "cluster-admin", ["alice"])
    )
    out = StringIO()

    call_command("scan_shadow_access", stdout=out)

    assert f"{cluster.name}: 1 binding outside Warden" in out.getvalue()
    with pytest.raises(CommandError, match="No live cluster is called nowhere-1"):
        call_command("scan_shadow_access", "nowhere-1", stdout=out)


def test_an_operator_scans_for_shadow_access_from_the_page_and_the_api(
    make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    rbac.api(sim).create_cluster_role_binding(
        binding_body("alice-admin", "cluster-admin", ["alice"])
    )
    operator = get_user_model().objects.create_user("olivia", is_staff=True)
    page, api = Client(), APIClient()
    page.force_login(operator)
    api.force_authenticate(operator)

    shown = page.post(f"/clusters/{cluster.pk}/shadow-scan", follow=True).content.decode()
    answer = api.post(f"/api/v1/clusters/{cluster.name}/scan-shadow-access/")

    assert f"{cluster.name} has 1 binding outside Warden" in shown
    assert answer.status_code == 200
    assert [f["name"] for f in answer.json()["found"]] == ["alice-admin"]
