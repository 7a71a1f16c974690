"""Registering a cluster checks Warden's access first; retiring removes what Warden owns."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from access.models import Grant
from clusters import services
from clusters.choices import ClusterState
from clusters.k8s import Endpoint
from clusters.models import Cluster
from kubesim.server import make_tls_files

pytestmark = pytest.mark.django_db


def endpoint(sim, **changes):
    values = {
        "api_url": sim.server_url,
        "token": sim.admin_token,
        "ca_pem": sim.ca_cert_pem.decode(),
    }
    values.update(changes)
    return Endpoint(**values)


def test_a_cluster_warden_may_manage_passes_the_check(kube_cluster):
    assert services.check_access(endpoint(kube_cluster())) == []


def test_an_unreachable_api_is_named(kube_cluster):
    sim = kube_cluster()
    sim.faults.unreachable = True
    problems = services.check_access(endpoint(sim))
    assert len(problems) == 1 and "unreachable" in problems[0]


def test_a_wrong_ca_says_to_paste_the_clusters_ca(kube_cluster, tmp_path):
    other_ca, _cert, _key = make_tls_files(tmp_path)
    problems = services.check_access(endpoint(kube_cluster(), ca_pem=other_ca.decode()))
    assert "CA bundle does not match" in problems[0]


def test_a_wrong_token_is_named_without_showing_it(kube_cluster):
    problems = services.check_access(endpoint(kube_cluster(), token="not-the-token"))
    assert "does not accept this token" in problems[0]
    assert "not-the-token" not in problems[0]


def test_too_little_rbac_lists_what_is_missing(kube_cluster):
    sim = kube_cluster()
    weak = sim.add_user("warden-weak", groups=[])
    problems = services.check_access(endpoint(sim, token=weak))
    assert "may not list clusterroles" in problems[0] and "escalate clusterroles" in problems[0]


def test_register_refuses_with_the_reasons_and_saves_nothing(kube_cluster):
    sim = kube_cluster()
    with pytest.raises(ValidationError) as refused:
        services.register_cluster(
            name="prod-1",
            environment="prod",
            tier="tier-0",
            api_url=sim.server_url,
            token="wrong",
            ca_bundle=sim.ca_cert_pem.decode(),
        )
    assert "does not accept this token" in " ".join(refused.value.messages)
    assert not Cluster.objects.exists()


def test_retire_removes_only_what_warden_owns(make_cluster, catalogue, people, rbac):
    from kubernetes import client as k8s_client

    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    rbac.api(sim).create_cluster_role_binding(
        k8s_client.V1ClusterRoleBinding(
            metadata=k8s_client.V1ObjectMeta(name="hand-made"),
            role_ref=k8s_client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"
            ),
            subjects=[
                k8s_client.RbacV1Subject(
                    kind="User", name="bob", api_group="rbac.authorization.k8s.io"
                )
            ],
        )
    )

    run = services.retire_cluster(cluster)

    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RETIRED and run.deleted == 1
    assert "warden-viewer" not in rbac.bindings(sim)
    assert rbac.subjects(sim, "hand-made") == ["bob"]
    assert services.reconcile_cluster(cluster.pk) is None  # retired clusters are left alone


def test_retire_of_an_unreachable_cluster_is_refused_unless_told_to_leave_objects(make_cluster):
    cluster, sim = make_cluster()
    sim.faults.unreachable = True
    with pytest.raises(ValidationError, match="Could not remove"):
        services.retire_cluster(cluster)
    cluster.refresh_from_db()
    assert cluster.state != ClusterState.RETIRED

    services.retire_cluster(cluster, remove_owned=False)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RETIRED
