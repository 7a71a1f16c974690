"""The operators' cluster pages: register, edit, check, reconcile and retire, through the browser's
requests (Django's test client) against kubesim clusters."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse

from access.models import AuditEvent, Grant
from clusters.choices import ClusterState, ReconcileTrigger
from clusters.models import Cluster, ReconcileRun
from kubesim.server import make_tls_files
from tests.clusters.conftest import kubeconfig_for

pytestmark = pytest.mark.django_db

REGISTER = reverse("cluster-register")


def registration(**fields):
    values = {
        "source": "kubeconfig",
        "environment": "prod",
        "tier": "tier-0",
        "binding": "groups",
        "labels": "region=eu-west-1\nteam=payments",
        "user_prefix": "oidc:",
        "group_prefix": "oidc:",
    }
    values.update(fields)
    return values


def page_text(response):
    return response.content.decode()


# --- registering --------------------------------------------------------------------------------


def test_an_operator_registers_a_cluster_from_a_pasted_kubeconfig(
    client, operator, kube_cluster, django_capture_on_commit_callbacks
):
    sim = kube_cluster()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(REGISTER, registration(kubeconfig=kubeconfig_for(sim)))

    cluster = Cluster.objects.get(name=sim.name)
    assert response.status_code == 302
    assert response["Location"] == reverse("cluster-detail", args=[cluster.pk])
    assert (cluster.environment, cluster.tier) == ("prod", "tier-0")
    assert cluster.labels == {"region": "eu-west-1", "team": "payments"}
    assert cluster.user_prefix == "oidc:" and cluster.bind_groups
    assert cluster.token == sim.admin_token
    # the first reconcile ran (eager Celery) and the registration is in the audit trail
    assert ReconcileRun.objects.filter(cluster=cluster).count() == 1
    event = AuditEvent.objects.get(action="cluster.registered")
    assert event.actor_name == "olivia" and event.object_id == str(cluster.pk)
    assert sim.admin_token not in str(event.after)


def test_an_uploaded_kubeconfig_with_several_contexts_asks_which_and_keeps_the_file(
    client, operator, kube_cluster
):
    one, two = kube_cluster(), kube_cluster()
    upload = io.BytesIO(kubeconfig_for(one, two).encode())
    upload.name = "fleet.kubeconfig"

    asked = client.post(REGISTER, registration(kubeconfig_file=upload, name="picked"))

    assert asked.status_code == 400
    text = page_text(asked)
    assert "This kubeconfig has 2 contexts: pick the cluster" in text
    assert f'<option value="{two.name}-ctx">' in text
    assert one.admin_token not in text and two.admin_token not in text
    assert not Cluster.objects.exists()

    # when: the operator picks the second context without uploading the file again
    picked = client.post(REGISTER, registration(context=f"{two.name}-ctx", name="picked"))

    assert picked.status_code == 302
    assert Cluster.objects.get(name="picked").api_url == two.server_url


def test_registration_by_api_url_ca_and_token(client, operator, kube_cluster):
    sim = kube_cluster()
    response = client.post(
        REGISTER,
        registration(
            source="manual",
            name="staging-eu",
            api_url=sim.server_url,
            ca_bundle=sim.ca_cert_pem.decode(),
            token=sim.admin_token,
            binding="users",
        ),
    )
    assert response.status_code == 302
    cluster = Cluster.objects.get(name="staging-eu")
    assert not cluster.bind_groups and cluster.token == sim.admin_token


def test_a_wrong_token_is_refused_by_name_saves_nothing_and_is_never_echoed(
    client, operator, kube_cluster
):
    sim = kube_cluster()
    response = client.post(
        REGISTER,
        registration(
            source="manual",
            name="prod-1",
            api_url=sim.server_url,
            ca_bundle=sim.ca_cert_pem.decode(),
            token="typo-token-4f9a",
        ),
    )
    assert response.status_code == 400
    assert "does not accept this token" in page_text(response)
    assert "typo-token-4f9a" not in page_text(response)
    assert not Cluster.objects.exists()
    assert not AuditEvent.objects.filter(action="cluster.registered").exists()


def test_a_pasted_kubeconfig_is_never_shown_back_after_a_failure(client, operator, kube_cluster):
    sim = kube_cluster()
    weak = sim.add_user("warden-weak", groups=[])
    response = client.post(REGISTER, registration(kubeconfig=kubeconfig_for(sim, token=weak)))

    text = page_text(response)
    assert response.status_code == 400
    assert "may not list clusterroles" in text and "warden-manager" in text
    assert weak not in text
    assert "kept for this registration" in text
    assert not Cluster.objects.exists()


def test_a_bad_ca_says_to_paste_the_clusters_ca(client, operator, kube_cluster, tmp_path):
    sim = kube_cluster()
    other_ca, _cert, _key = make_tls_files(tmp_path)
    response = client.post(
        REGISTER, registration(kubeconfig=kubeconfig_for(sim, ca_pem=other_ca.decode()))
    )
    assert response.status_code == 400
    assert "CA bundle does not match" in page_text(response)
    assert not Cluster.objects.exists()


def test_an_unreachable_cluster_is_named(client, operator, kube_cluster):
    sim = kube_cluster()
    sim.faults.unreachable = True
    response = client.post(REGISTER, registration(kubeconfig=kubeconfig_for(sim)))
    assert response.status_code == 400
    assert "is unreachable" in page_text(response)
    assert not Cluster.objects.exists()


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        ("clusters: [unclosed", "not valid YAML at line"),
        ("kind: Pod\n", "This is not a kubeconfig"),
        ("", "Paste or upload a kubeconfig"),
    ],
)
def test_a_malformed_kubeconfig_is_refused_with_what_to_fix(client, operator, kubeconfig, message):
    response = client.post(REGISTER, registration(kubeconfig=kubeconfig))
    assert response.status_code == 400
    assert message in page_text(response)
    assert not Cluster.objects.exists()


def test_a_context_the_kubeconfig_lacks_is_named_with_those_it_has(client, operator, kube_cluster):
    sim = kube_cluster()
    response = client.post(
        REGISTER, registration(kubeconfig=kubeconfig_for(sim), context="prod-ctx")
    )
    assert response.status_code == 400
    assert f"no context &#x27;prod-ctx&#x27;; it has: {sim.name}-ctx" in page_text(response)


def test_a_manual_registration_names_each_missing_field(client, operator):
    response = client.post(REGISTER, registration(source="manual"))
    text = page_text(response)
    assert "Name the cluster." in text
    assert "Give the API server" in text
    assert "Paste Warden" in text


def test_bad_labels_are_refused(client, operator, kube_cluster):
    sim = kube_cluster()
    response = client.post(
        REGISTER, registration(kubeconfig=kubeconfig_for(sim), labels="region eu\nbad key=x")
    )
    assert response.status_code == 400
    assert "write key=value" in page_text(response)
    assert not Cluster.objects.exists()


def test_a_retired_name_cannot_be_registered_again(client, operator, make_cluster, kube_cluster):
    old, _ = make_cluster()
    old.state = ClusterState.RETIRED
    old.save()
    sim = kube_cluster()
    response = client.post(REGISTER, registration(kubeconfig=kubeconfig_for(sim), name=old.name))
    assert response.status_code == 400
    assert "was retired; pick another name" in page_text(response)


def test_registering_a_name_already_taken_leaves_that_cluster_alone(
    client, operator, make_cluster, kube_cluster
):
    taken, taken_sim = make_cluster(environment="dev")
    other = kube_cluster()
    response = client.post(
        REGISTER, registration(kubeconfig=kubeconfig_for(other), name=taken.name)
    )
    assert response.status_code == 400
    assert "is already registered: edit it" in page_text(response)
    taken.refresh_from_db()
    assert taken.api_url == taken_sim.server_url and taken.environment == "dev"


def test_the_register_page_starts_fresh(client, operator, kube_cluster):
    sim = kube_cluster()
    client.post(REGISTER, registration(kubeconfig=kubeconfig_for(sim, token="wrong")))
    page = client.get(REGISTER)
    assert "kept for this registration" not in page_text(page)
    again = client.post(REGISTER, registration())
    assert "Paste or upload a kubeconfig" in page_text(again)


# --- editing, checking, reconciling -------------------------------------------------------------


def edit(cluster, **changes):
    values = {
        "environment": cluster.environment,
        "tier": cluster.tier,
        "labels": "",
        "user_prefix": cluster.user_prefix,
        "group_prefix": cluster.group_prefix,
        "binding": "groups" if cluster.bind_groups else "users",
        "api_url": cluster.api_url,
        "ca_bundle": cluster.ca_bundle,
        "token": "",
    }
    values.update(changes)
    return values


def test_editing_metadata_is_audited_and_reconciles_that_cluster(
    client, operator, make_cluster, catalogue, people, rbac, django_capture_on_commit_callbacks
):
    cluster, sim = make_cluster(environment="dev")
    other, _ = make_cluster(environment="dev")
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"], environments=["prod"])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("cluster-edit", args=[cluster.pk]), edit(cluster, environment="prod")
        )

    assert response.status_code == 302
    cluster.refresh_from_db()
    assert cluster.environment == "prod"
    assert rbac.subjects(sim, "warden-viewer") == ["payments"]
    assert ReconcileRun.objects.filter(cluster=other).count() == 0
    event = AuditEvent.objects.get(action="cluster.updated")
    assert event.before["environment"] == "dev" and event.after["environment"] == "prod"


def test_an_edit_with_a_wrong_new_token_is_refused_and_keeps_the_old_one(
    client, operator, make_cluster
):
    cluster, sim = make_cluster()
    response = client.post(
        reverse("cluster-edit", args=[cluster.pk]),
        edit(cluster, token="stale-token", tier="tier-0"),
    )
    assert response.status_code == 400
    assert "does not accept this token" in page_text(response)
    assert "stale-token" not in page_text(response)
    cluster.refresh_from_db()
    assert cluster.token == sim.admin_token and cluster.tier == "tier-2"


def test_the_edit_page_never_shows_the_token(client, operator, make_cluster):
    cluster, sim = make_cluster()
    page = client.get(reverse("cluster-edit", args=[cluster.pk]))
    assert page.status_code == 200
    assert sim.admin_token not in page_text(page)
    assert sim.admin_token not in page_text(
        client.get(reverse("cluster-detail", args=[cluster.pk]))
    )


def test_saving_an_unchanged_cluster_changes_nothing(client, operator, make_cluster):
    cluster, _ = make_cluster()
    response = client.post(reverse("cluster-edit", args=[cluster.pk]), edit(cluster), follow=True)
    assert "Nothing changed" in page_text(response)
    assert not AuditEvent.objects.filter(action="cluster.updated").exists()


def test_check_connection_says_what_is_wrong(client, operator, make_cluster):
    cluster, sim = make_cluster()
    fine = client.post(reverse("cluster-check", args=[cluster.pk]), follow=True)
    assert "may manage RBAC there" in page_text(fine)

    sim.faults.unreachable = True
    down = client.post(reverse("cluster-check", args=[cluster.pk]), follow=True)
    assert "is unreachable" in page_text(down)


def test_reconcile_now_runs_one_reconcile_of_that_cluster(
    client, operator, make_cluster, django_capture_on_commit_callbacks
):
    cluster, _ = make_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("cluster-reconcile", args=[cluster.pk]))
    run = ReconcileRun.objects.get(cluster=cluster)
    assert run.trigger == ReconcileTrigger.OPERATOR
    assert AuditEvent.objects.filter(action="cluster.reconcile_requested").count() == 1


def test_reconcile_fleet_now_reconciles_every_live_cluster(
    client, operator, make_cluster, django_capture_on_commit_callbacks
):
    live, _ = make_cluster()
    retired, _ = make_cluster()
    retired.state = ClusterState.RETIRED
    retired.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("fleet-reconcile"), follow=True)
    assert "all 1 live clusters" in page_text(response)
    assert ReconcileRun.objects.filter(cluster=live).count() == 1
    assert ReconcileRun.objects.filter(cluster=retired).count() == 0


# --- retiring -----------------------------------------------------------------------------------


def test_retiring_asks_for_the_name_and_removes_what_warden_owns(
    client, operator, make_cluster, catalogue, people, rbac
):
    from clusters import services

    cluster, sim = make_cluster()
    Grant.objects.create(person=people["alice"], role=catalogue["viewer"])
    services.reconcile_cluster(cluster.pk)
    url = reverse("cluster-retire", args=[cluster.pk])
    assert "Retiring is final" in page_text(client.get(url))

    unconfirmed = client.post(url, {"objects": "remove", "confirm": "something"})
    assert unconfirmed.status_code == 400 and f"Type {cluster.name} to confirm" in page_text(
        unconfirmed
    )
    cluster.refresh_from_db()
    assert cluster.state != ClusterState.RETIRED

    done = client.post(
        url, {"objects": "remove", "confirm": cluster.name, "reason": "decommissioned"}
    )

    assert done.status_code == 302
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RETIRED
    assert "warden-viewer" not in rbac.bindings(sim)
    event = AuditEvent.objects.get(action="cluster.retired")
    assert event.reason == "decommissioned" and event.after["removed_owned"] is True


def test_retiring_an_unreachable_cluster_fails_unless_told_to_leave_the_objects(
    client, operator, make_cluster
):
    cluster, sim = make_cluster()
    sim.faults.unreachable = True
    url = reverse("cluster-retire", args=[cluster.pk])

    refused = client.post(url, {"objects": "remove", "confirm": cluster.name})
    assert refused.status_code == 400 and "Could not remove" in page_text(refused)
    cluster.refresh_from_db()
    assert cluster.state != ClusterState.RETIRED

    client.post(url, {"objects": "leave", "confirm": cluster.name})
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RETIRED
    assert Cluster.objects.filter(pk=cluster.pk).exists()  # the record is kept


def test_a_retired_cluster_cannot_be_edited_or_reconciled(client, operator, make_cluster):
    cluster, _ = make_cluster()
    cluster.state = ClusterState.RETIRED
    cluster.save()
    edit_page = client.get(reverse("cluster-edit", args=[cluster.pk]), follow=True)
    assert "can no longer be changed" in page_text(edit_page)
    reconcile = client.post(reverse("cluster-reconcile", args=[cluster.pk]), follow=True)
    assert "is retired; it is not reconciled" in page_text(reconcile)


# --- who may, and CSRF --------------------------------------------------------------------------


def every_page(cluster_pk, source_pk):
    gets = [
        reverse("fleet-overview"),
        REGISTER,
        reverse("cluster-detail", args=[cluster_pk]),
        reverse("cluster-edit", args=[cluster_pk]),
        reverse("cluster-retire", args=[cluster_pk]),
        reverse("cluster-discovery"),
        reverse("cluster-discovery-new"),
        reverse("cluster-discovery-detail", args=[source_pk]),
        reverse("cluster-discovery-edit", args=[source_pk]),
    ]
    posts = [
        reverse("fleet-reconcile"),
        REGISTER,
        reverse("cluster-edit", args=[cluster_pk]),
        reverse("cluster-check", args=[cluster_pk]),
        reverse("cluster-reconcile", args=[cluster_pk]),
        reverse("cluster-retire", args=[cluster_pk]),
        reverse("cluster-discovery-new"),
        reverse("cluster-discovery-edit", args=[source_pk]),
        reverse("cluster-discovery-run", args=[source_pk]),
    ]
    return gets, posts


@pytest.fixture
def fleet_objects(make_cluster):
    from clusters.models import DiscoverySource

    cluster, _ = make_cluster()
    source = DiscoverySource.objects.create(name="folder", kind="kubeconfig-dir", path="/nowhere")
    return cluster, source


def test_people_who_are_not_operators_get_403_on_every_page_and_post(
    client, developer, fleet_objects
):
    cluster, source = fleet_objects
    client.force_login(developer)
    gets, posts = every_page(cluster.pk, source.pk)
    for url in gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, {"confirm": cluster.name, "objects": "leave"}).status_code == 403, (
            url
        )
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.ACTIVE
    assert not AuditEvent.objects.exclude(action="auth.login").exists()


def test_anonymous_visitors_are_sent_to_log_in(client, fleet_objects):
    cluster, source = fleet_objects
    gets, posts = every_page(cluster.pk, source.pk)
    for url in gets + posts:
        response = client.post(url) if url in posts else client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_every_form_needs_the_csrf_token(operator, fleet_objects):
    cluster, source = fleet_objects
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    _gets, posts = every_page(cluster.pk, source.pk)
    for url in posts:
        assert browser.post(url, {"confirm": cluster.name}).status_code == 403, url
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.ACTIVE
    # with the token the page hands out, the same form goes through
    page = browser.get(reverse("cluster-detail", args=[cluster.pk]))
    token = page.cookies["csrftoken"].value
    checked = browser.post(reverse("cluster-check", args=[cluster.pk]), HTTP_X_CSRFTOKEN=token)
    assert checked.status_code == 302


def test_the_admin_sends_cluster_changes_through_warden_pages(client, operator, make_cluster):
    operator.is_superuser = True
    operator.save()
    cluster, _ = make_cluster()
    assert client.get("/admin/clusters/cluster/add/")["Location"] == REGISTER
    change = client.get(f"/admin/clusters/cluster/{cluster.pk}/change/")
    assert change["Location"] == reverse("cluster-detail", args=[cluster.pk])
    delete = client.post(f"/admin/clusters/cluster/{cluster.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert Cluster.objects.filter(pk=cluster.pk).exists()
