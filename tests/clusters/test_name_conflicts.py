"""A name Warden wants is taken by an object it does not own (a hand-made `warden-viewer`):
Warden leaves that object alone, and says so once as a conflict that needs a person (the
cluster's page, a metric, one audit event), not as drift and not as a failed reconcile at every
run. When the person removes the object, Warden creates its own and the conflict clears."""

from __future__ import annotations

import pytest

from access.models import AuditEvent, Grant
from clusters import services
from clusters.choices import ReconcileStatus
from tests.clusters.test_reconcile import binding_body
from tests.config.test_metrics import sample, scrape

pytestmark = pytest.mark.django_db


def test_a_hand_made_object_with_a_warden_name_is_a_conflict_reported_once(
    client, operator, make_cluster, catalogue, people, rbac
):
    cluster, sim = make_cluster()
    api = rbac.api(sim)
    api.create_cluster_role_binding(binding_body("warden-viewer", "admin", ["mallory"]))
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])

    runs = [services.reconcile_cluster(cluster.pk) for _ in range(3)]

    assert rbac.subjects(sim, "warden-viewer") == ["mallory"]  # left alone
    for run in runs:
        assert run.status == ReconcileStatus.SUCCEEDED, run.error
        assert run.drift == 0 and run.error == ""
        assert run.conflicts == ["ClusterRoleBinding warden-viewer"]
    assert AuditEvent.objects.filter(action="cluster.conflict").count() == 1
    page = client.get(f"/clusters/{cluster.pk}/").content.decode()
    assert "ClusterRoleBinding warden-viewer" in page
    assert "kubectl delete clusterrolebinding warden-viewer" in page
    labels = {"cluster": cluster.name}
    assert sample(scrape(client), "warden_cluster_name_conflicts", **labels) == 1

    api.delete_cluster_role_binding("warden-viewer")  # the person clears it
    cleared = services.reconcile_cluster(cluster.pk)

    assert cleared.status == ReconcileStatus.SUCCEEDED and cleared.conflicts == []
    assert cleared.created == 1
    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
    assert (
        "kubectl delete clusterrolebinding"
        not in client.get(f"/clusters/{cluster.pk}/").content.decode()
    )
    assert sample(scrape(client), "warden_cluster_name_conflicts", **labels) == 0


def test_a_conflicting_role_binding_names_its_namespace(make_cluster, catalogue, people, rbac):
    cluster, sim = make_cluster()
    rbac.api(sim).create_namespaced_role_binding(
        "default", binding_body("warden-developer", "admin", ["mallory"], namespace="default")
    )
    Grant.objects.create(
        person=people["carol"], role=catalogue["developer"], namespaces=["default"]
    )

    run = services.reconcile_cluster(cluster.pk)

    assert run.conflicts == ["RoleBinding default/warden-developer"]
    assert run.status == ReconcileStatus.SUCCEEDED
