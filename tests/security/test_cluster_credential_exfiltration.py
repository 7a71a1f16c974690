"""Issue 15, item 6: stored cluster credentials never go anywhere but where they were given for.

An operator (olivia) who edits a cluster — or a discovery source — and points its API URL (and
CA) at a server of her own, leaving the token empty, must not make Warden send the stored prod
token there: a new URL or CA needs the token again. API URLs are https:// only (a setting allows
http:// for local testing). A plain team member (alice) cannot edit a cluster at all.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from access.models import AuditEvent
from clusters.models import Cluster, DiscoverySource
from tests.clusters.test_cluster_pages import edit

pytestmark = pytest.mark.django_db
STORED = "stored-prod-token-5150"


@pytest.fixture
def prod(make_cluster):
    cluster, sim = make_cluster(environment="prod", tier="tier-0")
    return cluster, sim


def STORED_TOKEN_NOT_SENT(listener):
    """The attacker's server heard nothing (on today's main it got `Bearer <stored token>`)."""
    assert listener.authorizations() == []
    return True


def assert_unchanged(cluster, sim):
    cluster.refresh_from_db()
    assert cluster.api_url == sim.server_url
    assert cluster.token == sim.admin_token
    assert not AuditEvent.objects.filter(action="cluster.updated").exists()


@pytest.mark.parametrize("with_new_ca", [True, False])
def test_an_operator_cannot_point_a_cluster_elsewhere_without_its_token_on_the_page(
    client,
    company,
    prod,
    listener,
    with_new_ca,
):
    cluster, sim = prod
    client.force_login(company.olivia)
    changes = {"api_url": listener.url}
    if with_new_ca:
        changes["ca_bundle"] = listener.ca_pem

    answer = client.post(reverse("cluster-edit", args=[cluster.pk]), edit(cluster, **changes))

    assert STORED_TOKEN_NOT_SENT(listener)
    assert answer.status_code == 400
    assert "token again" in answer.content.decode()
    assert_unchanged(cluster, sim)


def test_an_operator_cannot_point_a_cluster_elsewhere_without_its_token_over_the_api(
    api,
    company,
    prod,
    listener,
):
    cluster, sim = prod

    answer = api("olivia").patch(
        f"/api/v1/clusters/{cluster.name}/",
        {"api_url": listener.url, "ca_bundle": listener.ca_pem},
        format="json",
    )

    assert STORED_TOKEN_NOT_SENT(listener)
    assert answer.status_code == 400
    assert "token again" in str(answer.json())
    assert_unchanged(cluster, sim)


def test_a_new_ca_alone_needs_the_token_again(client, company, prod, listener):
    cluster, sim = prod
    client.force_login(company.olivia)

    answer = client.post(
        reverse("cluster-edit", args=[cluster.pk]), edit(cluster, ca_bundle=listener.ca_pem)
    )

    assert answer.status_code == 400 and "token again" in answer.content.decode()
    assert_unchanged(cluster, sim)


def test_moving_a_cluster_with_its_token_given_again_is_checked_and_saved(
    client, company, prod, kube_cluster
):
    cluster, _ = prod
    moved = kube_cluster()
    client.force_login(company.olivia)

    answer = client.post(
        reverse("cluster-edit", args=[cluster.pk]),
        edit(
            cluster,
            api_url=moved.server_url,
            ca_bundle=moved.ca_cert_pem.decode(),
            token=moved.admin_token,
        ),
    )

    assert answer.status_code == 302
    cluster.refresh_from_db()
    assert (cluster.api_url, cluster.token) == (moved.server_url, moved.admin_token)


def test_a_plain_member_cannot_edit_a_cluster(client, api, company, prod, listener):
    cluster, sim = prod
    client.force_login(company.alice)

    page = client.post(
        reverse("cluster-edit", args=[cluster.pk]), edit(cluster, api_url=listener.url)
    )
    rest = api("alice").patch(
        f"/api/v1/clusters/{cluster.name}/", {"api_url": listener.url}, format="json"
    )

    assert page.status_code == 403 and rest.status_code == 403
    assert listener.requests == []
    assert_unchanged(cluster, sim)


# --- http:// ------------------------------------------------------------------------------------


def test_an_http_api_url_is_refused_on_registration_and_edit(client, api, company, prod):
    cluster, sim = prod
    plain = sim.server_url.replace("https://", "http://")
    client.force_login(company.olivia)

    page = client.post(
        reverse("cluster-register"),
        {
            "source": "manual",
            "name": "plain-1",
            "environment": "dev",
            "tier": "tier-3",
            "binding": "groups",
            "api_url": plain,
            "token": sim.admin_token,
        },
    )
    rest = api("olivia").post(
        "/api/v1/clusters/",
        {
            "name": "plain-2",
            "environment": "dev",
            "tier": "tier-3",
            "api_url": plain,
            "token": sim.admin_token,
        },
        format="json",
    )
    edited = client.post(
        reverse("cluster-edit", args=[cluster.pk]),
        edit(cluster, api_url=plain, token=sim.admin_token),
    )

    assert page.status_code == 400 and "https://" in page.content.decode()
    assert rest.status_code == 400 and "https://" in str(rest.json())
    assert edited.status_code == 400 and "https://" in edited.content.decode()
    assert not Cluster.objects.filter(name__startswith="plain-").exists()
    assert_unchanged(cluster, sim)


def test_the_local_testing_setting_allows_http(settings):
    from core import outbound

    settings.WARDEN_ALLOW_HTTP_API_URLS = False
    with pytest.raises(Exception, match="https://"):
        outbound.check_api_url("http://127.0.0.1:6443")
    settings.WARDEN_ALLOW_HTTP_API_URLS = True
    outbound.check_api_url("http://127.0.0.1:6443")


# --- discovery sources ----------------------------------------------------------------------------


def test_an_operator_cannot_point_a_discovery_source_elsewhere_without_its_token(
    client,
    company,
    kube_cluster,
    listener,
):
    management = kube_cluster()
    source = DiscoverySource.objects.create(
        name="capi-mgmt",
        kind="cluster-api",
        api_url=management.server_url,
        ca_bundle=management.ca_cert_pem.decode(),
        token=STORED,
        namespace="capi",
        rules=[{"name": "*", "environment": "dev", "tier": "tier-3"}],
    )
    client.force_login(company.olivia)

    answer = client.post(
        reverse("cluster-discovery-edit", args=[source.pk]),
        {
            "name": "capi-mgmt",
            "kind": "cluster-api",
            "enabled": "on",
            "api_url": listener.url,
            "ca_bundle": listener.ca_pem,
            "namespace": "capi",
            "rules_text": "- name: '*'\n  environment: dev\n  tier: tier-3\n",
            "grace_hours": 24,
            "token": "",
        },
    )

    assert STORED_TOKEN_NOT_SENT(listener)
    assert answer.status_code == 400
    assert "token again" in answer.content.decode()
    source.refresh_from_db()
    assert (source.api_url, source.token) == (management.server_url, STORED)
