"""Issue 15, item 8b: one API server, two names.

Two registrations of one cluster undo each other's bindings at every reconcile (access
flapping). A cluster is what the cluster itself is, the uid of its kube-system namespace (read
at registration, with the `list namespaces` Warden already holds), not the name a kubeconfig
gives it nor the URL that reaches it: a second registration is refused naming the first, by the
page, the API, an edit and discovery alike. Registrations made before Warden kept the uid learn
it at their next reconcile, and a duplicate found then stops writing."""

from __future__ import annotations

import copy

import pytest
import yaml

from access.models import AuditEvent
from clusters import discovery, services
from clusters.choices import ReconcileStatus
from clusters.models import Cluster, DiscoverySource, ReconcileRun
from tests.clusters.conftest import kubeconfig_for
from tests.clusters.test_cluster_pages import REGISTER, edit, registration

pytestmark = pytest.mark.django_db


def other_name_for(sim) -> str:
    """The same API server through another address (its certificate names both)."""
    return sim.server_url.replace("127.0.0.1", "localhost")


def test_the_registration_page_refuses_the_same_cluster_under_another_name(
    client, operator, kube_cluster
):
    sim = kube_cluster()
    first = client.post(
        REGISTER,
        registration(
            source="manual",
            name="dev-1",
            api_url=sim.server_url,
            ca_bundle=sim.ca_cert_pem.decode(),
            token=sim.admin_token,
        ),
    )
    assert first.status_code == 302

    for url in (sim.server_url, other_name_for(sim)):
        again = client.post(
            REGISTER,
            registration(
                source="manual",
                name="dev-1-alias",
                api_url=url,
                ca_bundle=sim.ca_cert_pem.decode(),
                token=sim.admin_token,
            ),
        )
        assert again.status_code == 400, url
        assert "already registered as dev-1" in again.content.decode(), url

    assert list(Cluster.objects.values_list("name", flat=True)) == ["dev-1"]
    assert AuditEvent.objects.filter(action="cluster.registered").count() == 1


def test_the_api_refuses_the_same_cluster_under_another_name(api, company, kube_cluster):
    sim = kube_cluster()
    body = {
        "environment": "dev",
        "tier": "tier-2",
        "api_url": sim.server_url,
        "ca_bundle": sim.ca_cert_pem.decode(),
        "token": sim.admin_token,
    }
    assert (
        api("olivia")
        .post("/api/v1/clusters/", {**body, "name": "dev-1"}, format="json")
        .status_code
        == 201
    )

    again = api("olivia").post(
        "/api/v1/clusters/",
        {**body, "name": "dev-1-alias", "api_url": other_name_for(sim)},
        format="json",
    )

    assert again.status_code == 400, again.json()
    assert "already registered as dev-1" in str(again.json())
    assert not Cluster.objects.filter(name="dev-1-alias").exists()


def test_an_edit_cannot_point_a_cluster_at_another_registered_cluster(
    client, operator, make_cluster
):
    one, sim_one = make_cluster()
    two, _sim_two = make_cluster()
    services.reconcile_cluster(one.pk)  # one knows what it is

    response = client.post(
        f"/clusters/{two.pk}/edit/",
        edit(
            two,
            api_url=sim_one.server_url,
            ca_bundle=sim_one.ca_cert_pem.decode(),
            token=sim_one.admin_token,
        ),
    )

    assert response.status_code == 400
    assert f"already registered as {one.name}" in response.content.decode()
    two.refresh_from_db()
    assert two.api_url != sim_one.server_url


def test_a_registration_from_before_learns_the_uid_and_a_duplicate_stops_writing(
    make_cluster, client, django_user_model
):
    # Two registrations of one server, made before Warden kept the uid (no uid stored).
    first, sim = make_cluster()
    second = Cluster.objects.create(
        name="dev-1-alias",
        environment="dev",
        tier="tier-2",
        api_url=other_name_for(sim),
        ca_bundle=first.ca_bundle,
        token=sim.admin_token,
    )
    assert first.identity == second.identity == ""

    services.reconcile_cluster(first.pk)
    run = services.reconcile_cluster(second.pk)

    first.refresh_from_db()
    assert first.identity  # learnt at its reconcile, and shown on its page
    olivia = django_user_model.objects.create_user("olivia", is_staff=True)
    client.force_login(olivia)
    assert first.identity in client.get(f"/clusters/{first.pk}/").content.decode()
    assert run.status == ReconcileStatus.FAILED
    assert f"also registered as {first.name}" in run.error
    assert run.created == run.updated == run.deleted == 0  # it wrote nothing
    found = AuditEvent.objects.filter(action="cluster.duplicate", object_id=str(second.pk))
    assert found.count() == 1
    services.reconcile_cluster(second.pk)  # and again: reported once, not at every run
    assert found.count() == 1
    assert ReconcileRun.objects.filter(cluster=second, status="failed").count() == 2


def test_a_retired_cluster_may_be_registered_again_under_a_new_name(client, operator, make_cluster):
    old, sim = make_cluster()
    services.reconcile_cluster(old.pk)
    services.retire_cluster(old, actor=operator)

    again = client.post(
        REGISTER,
        registration(
            source="manual",
            name="dev-1-reborn",
            api_url=sim.server_url,
            ca_bundle=sim.ca_cert_pem.decode(),
            token=sim.admin_token,
        ),
    )

    assert again.status_code == 302
    assert Cluster.objects.get(name="dev-1-reborn").identity == (
        Cluster.objects.get(pk=old.pk).identity
    )


def test_discovery_registers_one_server_once_and_reports_the_other_name(kube_cluster, tmp_path):
    sim = kube_cluster()
    doc = yaml.safe_load(kubeconfig_for(sim))
    alias = copy.deepcopy(doc["clusters"][0])
    alias["name"] = "c-alias"
    alias["cluster"]["server"] = other_name_for(sim)
    doc["clusters"].append(alias)
    doc["contexts"].append(
        {"name": "c-alias-ctx", "context": {"cluster": "c-alias", "user": doc["users"][0]["name"]}}
    )
    folder = tmp_path / "kubeconfigs"
    folder.mkdir()
    (folder / "fleet.yaml").write_text(yaml.safe_dump(doc))
    source = DiscoverySource.objects.create(
        name="folder",
        kind="kubeconfig-dir",
        path=str(folder),
        rules=[{"name": "c*", "environment": "staging", "tier": "tier-2"}],
    )

    run = discovery.discover(source.pk)

    assert (run.found, run.registered, run.failed) == (2, 1, 1)
    assert Cluster.objects.count() == 1
    problem = run.problems[0]["problem"]
    assert "already registered as" in problem
