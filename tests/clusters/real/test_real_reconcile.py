"""Registering and reconciling a real kube-apiserver, checked as its users and its audit log
see it."""

from __future__ import annotations

import secrets

import pytest
from django.core.exceptions import ValidationError
from kubernetes import client as k8s_client

from access.models import AuditEvent, Grant, Role, RoleDefinition
from clusters import services
from clusters.choices import ClusterState, ReconcileStatus
from clusters.compiler import MANAGED_BY_LABEL
from clusters.k8s import LIST_PAGE
from clusters.models import Cluster
from tests.clusters.real.conftest import status_listing_pods
from tests.clusters.sa_helpers import declare
from tests.clusters.test_reconcile import binding_body

pytestmark = pytest.mark.django_db
# Unique per run: a deleted namespace stays Terminating for a few seconds on a real server.
CHECKOUT = f"checkout-{secrets.token_hex(3)}"


def test_the_manager_token_of_the_deploy_manifest_passes_the_access_check(real_cluster, register):
    cluster = register()

    saved = Cluster.objects.get(pk=cluster.pk)
    assert saved.api_url == real_cluster.server_url
    assert saved.token == real_cluster.manager_token  # stored (encrypted) for the reconciler
    assert AuditEvent.objects.filter(
        action="cluster.registered", object_id=str(cluster.pk)
    ).exists()


def test_a_token_with_too_little_rbac_is_refused_with_what_to_bind(real_cluster, register, rbac):
    # given: a ServiceAccount that may only read (view), as someone might paste by mistake
    weak = real_cluster.token_for("warden-weak")
    viewer = binding_body("warden-weak-view", "view", [])
    viewer.subjects = [
        k8s_client.RbacV1Subject(kind="ServiceAccount", name="warden-weak", namespace="default")
    ]
    rbac.api(real_cluster).create_cluster_role_binding(viewer)

    with pytest.raises(ValidationError) as refused:
        register(token=weak)

    message = " ".join(refused.value.messages)
    assert "may not list clusterroles" in message
    assert "bind clusterroles" in message and "escalate clusterroles" in message
    assert "warden-manager ClusterRole" in message
    assert weak not in message
    assert not Cluster.objects.exists()


def test_a_token_the_server_does_not_know_is_refused_without_showing_it(register):
    with pytest.raises(ValidationError) as refused:
        register(token="not-a-token")

    message = " ".join(refused.value.messages)
    assert "does not accept this token" in message and "not-a-token" not in message


def test_reconcile_from_empty_gives_people_their_access(
    real_cluster, register, catalogue, people, rbac
):
    # given
    cluster = register()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    assert status_listing_pods(real_cluster, "alice") == 403

    # when
    run = services.reconcile_cluster(cluster.pk)

    # then: the objects are there, owned, and the API server lets the right people in
    assert run.status == ReconcileStatus.SUCCEEDED, run.error
    assert run.created == 2
    assert rbac.subjects(real_cluster, "warden-viewer") == ["payments"]
    developer = rbac.bindings(real_cluster, "default")["warden-developer"]
    assert developer.role_ref.name == "edit"
    assert developer.metadata.labels[MANAGED_BY_LABEL] == "warden"
    assert status_listing_pods(real_cluster, "alice") == 200  # viewer through team payments
    assert status_listing_pods(real_cluster, "carol") == 200  # developer in default
    assert status_listing_pods(real_cluster, "carol", "kube-system") == 403
    assert status_listing_pods(real_cluster, "dave") == 403


def test_a_reconcile_with_nothing_to_do_writes_nothing(real_cluster, register, catalogue, people):
    cluster = register()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)
    mark = real_cluster.audit_mark()

    run = services.reconcile_cluster(cluster.pk)

    assert (run.created, run.updated, run.recreated, run.deleted) == (0, 0, 0, 0), run.error
    events = [e for e in real_cluster.audit_since(mark) if "warden/" in e.get("userAgent", "")]
    assert [e["verb"] for e in events if e["verb"] not in ("list", "get", "watch")] == []
    assert len(events) == run.api_calls
    assert real_cluster.writes_since(mark) == []


def test_drift_is_repaired_with_one_write_per_object(
    real_cluster, register, catalogue, people, rbac
):
    cluster = register()
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)
    api = rbac.api(real_cluster)
    # someone edits one binding and deletes another by hand
    edited = api.read_cluster_role_binding("warden-viewer")
    edited.subjects[0].name = "intruders"
    api.replace_cluster_role_binding("warden-viewer", edited)
    api.delete_namespaced_role_binding("warden-developer", "default")
    mark = real_cluster.audit_mark()

    run = services.reconcile_cluster(cluster.pk)

    assert run.drift == 2, run.error
    assert rbac.subjects(real_cluster, "warden-viewer") == ["payments"]
    assert rbac.subjects(real_cluster, "warden-developer", "default") == ["carol"]
    writes = sorted(
        (e["verb"], e["objectRef"]["resource"]) for e in real_cluster.writes_since(mark)
    )
    assert writes == [("create", "rolebindings"), ("update", "clusterrolebindings")]


def test_unmanaged_bindings_are_never_touched(real_cluster, register, catalogue, people, rbac):
    cluster = register()
    api = rbac.api(real_cluster)
    api.create_cluster_role_binding(binding_body("hand-made", "view", ["alice"]))
    api.create_cluster_role_binding(binding_body("warden-viewer", "admin", ["mallory"]))
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    mark = real_cluster.audit_mark()

    run = services.reconcile_cluster(cluster.pk)

    # A hand-made object holding Warden's name is a conflict for a person, not a failed run.
    assert run.status == ReconcileStatus.SUCCEEDED
    assert run.conflicts == ["ClusterRoleBinding warden-viewer"]
    assert rbac.subjects(real_cluster, "hand-made") == ["alice"]
    assert rbac.subjects(real_cluster, "warden-viewer") == ["mallory"]
    # Warden's create of its name met the hand-made object (409) and went no further.
    writes = real_cluster.writes_since(mark)
    assert [(e["verb"], e["responseStatus"]["code"]) for e in writes] == [("create", 409)]


def test_a_leaver_loses_access(real_cluster, register, catalogue, people, rbac):
    cluster = register(bind_groups=False)
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    assert rbac.subjects(real_cluster, "warden-viewer") == ["alice", "bob"]
    assert status_listing_pods(real_cluster, "bob") == 200

    people["bob"].is_active = False
    people["bob"].save()
    services.reconcile_cluster(cluster.pk)

    assert rbac.subjects(real_cluster, "warden-viewer") == ["alice"]
    assert status_listing_pods(real_cluster, "bob") == 403
    assert status_listing_pods(real_cluster, "alice") == 200


def test_a_changed_role_ref_is_deleted_and_recreated(
    real_cluster, register, catalogue, people, rbac
):
    cluster = register()
    Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=["default"]
    )
    services.reconcile_cluster(cluster.pk)
    mark = real_cluster.audit_mark()

    catalogue["developer"].definitions.filter(environment="").update(cluster_role="admin")
    run = services.reconcile_cluster(cluster.pk)

    assert run.recreated == 1, run.error
    assert rbac.bindings(real_cluster, "default")["warden-developer"].role_ref.name == "admin"
    writes = [(e["verb"], e["objectRef"]["name"]) for e in real_cluster.writes_since(mark)]
    assert writes == [("delete", "warden-developer"), ("create", "warden-developer")]


def test_a_grant_waits_for_its_namespace_then_is_bound(
    real_cluster, register, catalogue, people, rbac
):
    cluster = register()
    grant = Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=[CHECKOUT]
    )

    run = services.reconcile_cluster(cluster.pk)

    assert run.status == ReconcileStatus.SUCCEEDED, run.error
    assert run.pending == {str(grant.pk): [f"namespace '{CHECKOUT}' does not exist yet"]}
    rbac.core(real_cluster).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=CHECKOUT))
    )
    run = services.reconcile_cluster(cluster.pk)
    assert run.pending == {}, run.error
    assert rbac.subjects(real_cluster, "warden-developer", CHECKOUT) == ["alice"]
    assert status_listing_pods(real_cluster, "alice", CHECKOUT) == 200


def test_shadow_access_is_reported_and_left_alone(real_cluster, register, catalogue, people, rbac):
    cluster = register()
    api = rbac.api(real_cluster)
    api.create_cluster_role_binding(binding_body("alice-admin", "cluster-admin", ["alice"]))
    api.create_cluster_role_binding(binding_body("ci-robot", "view", ["ci-bot"]))
    Grant.objects.create(person=people["bob"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)  # Warden's own binding is not shadow access
    mark = real_cluster.audit_mark()

    found = services.scan_shadow_access(cluster.pk)

    # The real server's bootstrap bindings name system users and groups, never directory people.
    assert [(f["name"], f["role"], f["subjects"]) for f in found] == [
        ("alice-admin", "cluster-admin", ["User:alice"]),
    ]
    assert rbac.subjects(real_cluster, "alice-admin") == ["alice"]
    assert real_cluster.writes_since(mark) == []


def test_retire_removes_only_what_warden_owns(real_cluster, register, catalogue, people, rbac):
    cluster = register()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    rbac.api(real_cluster).create_cluster_role_binding(binding_body("hand-made", "view", ["bob"]))

    run = services.retire_cluster(cluster)

    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RETIRED and run.deleted == 1, run.error
    assert "warden-viewer" not in rbac.bindings(real_cluster)
    assert rbac.subjects(real_cluster, "hand-made") == ["bob"]
    assert status_listing_pods(real_cluster, "alice") == 403
    assert services.reconcile_cluster(cluster.pk) is None


def test_the_manager_may_bind_cluster_admin_and_write_roles_it_does_not_hold(
    real_cluster, register, catalogue, people, rbac
):
    # given: an admin grant (a binding to cluster-admin) and a role Warden defines by rules, in
    # namespaces matched by a pattern; the manager holds neither (RBAC's escalation check)
    cluster = register()
    suffix = secrets.token_hex(3)
    team_a, team_b = f"team-a-{suffix}", f"team-b-{suffix}"
    core = rbac.core(real_cluster)
    for name in (team_a, team_b, f"other-{suffix}"):
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    log_reader = Role.objects.create(name="log-reader", display_name="Log reader", rank=5)
    RoleDefinition.objects.create(
        role=log_reader,
        rules=[{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}],
        namespaces=[f"team-*-{suffix}"],
    )
    Grant.objects.create(team=people["payments"], role=log_reader)
    Grant.objects.create(person=people["carol"], role=catalogue["admin"])

    # when
    run = services.reconcile_cluster(cluster.pk)

    # then: the server accepted every write, and the access is what the roles say
    assert run.status == ReconcileStatus.SUCCEEDED, run.error
    assert rbac.api(real_cluster).read_cluster_role("warden-log-reader").rules[0].resources == [
        "pods",
        "pods/log",
    ]
    assert status_listing_pods(real_cluster, "alice", team_a) == 200
    assert status_listing_pods(real_cluster, "alice", team_b) == 200
    assert status_listing_pods(real_cluster, "alice", f"other-{suffix}") == 403
    assert status_listing_pods(real_cluster, "carol", "kube-system") == 200
    assert rbac.bindings(real_cluster)["warden-admin"].role_ref.name == "cluster-admin"


def test_a_second_reconcile_of_every_kind_warden_writes_writes_nothing(
    real_cluster, register, catalogue, people
):
    # given: a ClusterRole Warden defines by rules, bindings of both kinds, a managed
    # ServiceAccount with its binding, all written once
    cluster = register()
    log_reader = Role.objects.create(name="log-reader", display_name="Log reader", rank=5)
    RoleDefinition.objects.create(
        role=log_reader,
        rules=[
            {"apiGroups": [""], "resources": ["pods/log", "pods"], "verbs": ["list", "get"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        ],
        namespaces=["default"],
    )
    Grant.objects.create(team=people["payments"], role=log_reader)
    Grant.objects.create(person=people["carol"], role=catalogue["viewer"])
    declare(cluster, people["payments"], roles=[catalogue["developer"]])
    first = services.reconcile_cluster(cluster.pk)
    assert first.status == ReconcileStatus.SUCCEEDED and first.created >= 4, first.error
    mark = real_cluster.audit_mark()

    # when: nothing changed in Warden, and the server filled in its defaults
    run = services.reconcile_cluster(cluster.pk)

    # then: what the server answers compares equal to what Warden wants
    assert (run.created, run.updated, run.recreated, run.deleted) == (0, 0, 0, 0), run.error
    assert real_cluster.writes_since(mark) == []


def test_a_grant_for_a_namespace_being_deleted_waits_and_the_rest_is_put_in_force(
    real_cluster, register, catalogue, people, rbac
):
    # given: a namespace held in Terminating by a finalizer, as a stuck deletion does
    cluster = register()
    leaving = f"leaving-{secrets.token_hex(3)}"
    core = rbac.core(real_cluster)
    core.create_namespace(
        k8s_client.V1Namespace(
            metadata=k8s_client.V1ObjectMeta(name=leaving, finalizers=["example.com/hold"])
        )
    )
    grant = Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=[leaving]
    )
    Grant.objects.create(person=people["bob"], role=catalogue["viewer"])
    core.delete_namespace(leaving)
    try:
        # when
        run = services.reconcile_cluster(cluster.pk)

        # then: the server would refuse new content there; Warden waits instead of failing
        assert run.status == ReconcileStatus.SUCCEEDED, run.error
        assert run.pending == {str(grant.pk): [f"namespace '{leaving}' is being deleted"]}
        assert rbac.subjects(real_cluster, "warden-viewer") == ["bob"]
    finally:
        core.patch_namespace(leaving, {"metadata": {"finalizers": None}})


def test_lists_longer_than_a_page_are_read_whole_with_the_servers_continue_tokens(
    real_cluster, register, people, rbac
):
    # given: more hand-made bindings naming a directory person than one LIST page holds
    cluster = register()
    namespace = f"crowded-{secrets.token_hex(3)}"
    core, api = rbac.core(real_cluster), rbac.api(real_cluster)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    for i in range(LIST_PAGE + 10):
        api.create_namespaced_role_binding(
            namespace, binding_body(f"by-hand-{i:03d}", "view", ["alice"], namespace=namespace)
        )
    mark = real_cluster.audit_mark()

    # when
    found = services.scan_shadow_access(cluster.pk)

    # then: every one is reported, read in two pages
    assert len([f for f in found if f["namespace"] == namespace]) == LIST_PAGE + 10
    lists = [
        e
        for e in real_cluster.audit_since(mark)
        if e["verb"] == "list" and e["objectRef"]["resource"] == "rolebindings"
    ]
    assert len(lists) == 2 and "continue=" in lists[1]["requestURI"]


def test_the_cluster_is_known_by_its_kube_system_uid_and_registered_once(
    real_cluster, register, rbac
):
    cluster = register()

    uid = rbac.core(real_cluster).read_namespace("kube-system").metadata.uid
    assert Cluster.objects.get(pk=cluster.pk).identity == uid  # read with `list namespaces`
    with pytest.raises(ValidationError) as refused:
        services.register_cluster(
            name="real-alias",
            environment="dev",
            tier="tier-2",
            api_url=real_cluster.server_url.replace("127.0.0.1", "localhost"),
            token=real_cluster.manager_token,
            ca_bundle=real_cluster.ca_cert_pem.decode(),
        )
    assert f"already registered as {cluster.name}" in " ".join(refused.value.messages)
