"""Issue 15, item 9: Warden's outbound requests cannot be aimed at metadata services, and never
repeat what a remote server answered.

An operator (olivia) registering a cluster or a discovery source, or anyone adding a webhook
delivery target, could point Warden at 169.254.169.254 (the cloud metadata service of the node
Warden runs on) and read the answer back in the error message. Link-local and metadata
addresses are refused by default, however they are spelt; errors say the status code and a
fixed text, never the body (nor the reason phrase) of the answer.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from clusters.models import Cluster, DeliveryTarget, DiscoverySource
from core import outbound, webhooks
from tests.clusters.sa_helpers import declare

pytestmark = pytest.mark.django_db

METADATA_URLS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.170.2:443/v2/credentials",
    "https://[fd00:ec2::254]/",
    "https://[fe80::1]:6443/",
    "https://[::ffff:169.254.169.254]/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://METADATA.google.internal./",
]
REFUSED = "link-local or cloud-metadata"


def refused(text):
    return REFUSED in text or "cloud metadata service" in text


@pytest.mark.parametrize("url", METADATA_URLS)
def test_an_operator_cannot_register_a_cluster_at_a_metadata_address(client, api, company, url):
    client.force_login(company.olivia)

    page = client.post(
        reverse("cluster-register"),
        {
            "source": "manual",
            "name": "meta-page",
            "environment": "dev",
            "tier": "tier-3",
            "binding": "groups",
            "api_url": url,
            "token": "some-token",
        },
    )
    rest = api("olivia").post(
        "/api/v1/clusters/",
        {
            "name": "meta-api",
            "environment": "dev",
            "tier": "tier-3",
            "api_url": url,
            "token": "some-token",
        },
        format="json",
    )

    assert page.status_code == 400 and refused(page.content.decode())
    assert rest.status_code == 400 and refused(str(rest.json()))
    assert not Cluster.objects.filter(name__startswith="meta-").exists()


def test_an_operator_cannot_move_a_cluster_to_a_metadata_address(api, company, make_cluster):
    cluster, sim = make_cluster()

    answer = api("olivia").patch(
        f"/api/v1/clusters/{cluster.name}/",
        {"api_url": "https://169.254.169.254/", "token": "some-token"},
        format="json",
    )

    assert answer.status_code == 400 and refused(str(answer.json()))
    cluster.refresh_from_db()
    assert cluster.api_url == sim.server_url


def test_an_operator_cannot_point_a_discovery_source_at_a_metadata_address(client, company):
    client.force_login(company.olivia)

    answer = client.post(
        reverse("cluster-discovery-new"),
        {
            "name": "meta",
            "kind": "cluster-api",
            "enabled": "on",
            "api_url": "https://169.254.169.254/",
            "namespace": "capi",
            "rules_text": "- name: '*'\n  environment: dev\n  tier: tier-3\n",
            "grace_hours": 24,
            "token": "some-token",
        },
    )

    assert answer.status_code == 400 and refused(answer.content.decode())
    assert not DiscoverySource.objects.exists()


def test_a_webhook_target_at_a_metadata_address_is_refused(api, company, make_cluster):
    cluster, _ = make_cluster()
    account = declare(cluster, company.teams["payments"])

    answer = api("olivia").post(
        f"/api/v1/service-accounts/{account.pk}/targets/",
        {"kind": "webhook", "url": "https://169.254.169.254/hook", "signing_key": "k" * 40},
        format="json",
    )

    assert answer.status_code == 400 and refused(str(answer.json()))
    assert not DeliveryTarget.objects.filter(kind="webhook").exists()
    with pytest.raises(webhooks.WebhookError, match=REFUSED):
        webhooks.post_signed("https://169.254.169.254/hook", b"{}", "k" * 40)


def test_a_range_can_be_allowed_by_setting(settings):
    assert refused(outbound.refusal("https://169.254.10.1:6443"))
    # 169.254.169.254 written as one number (the forms refuse it as a URL already)
    assert refused(outbound.refusal("https://2852039166/"))
    settings.WARDEN_ALLOWED_NETWORKS = ["169.254.10.0/24"]
    assert outbound.refusal("https://169.254.10.1:6443") == ""
    assert refused(outbound.refusal("https://169.254.169.254/"))
    # loopback and private networks are where clusters live: never refused
    assert outbound.refusal("https://127.0.0.1:6443") == ""
    assert outbound.refusal("https://10.0.0.1:6443") == ""


# --- remote answers are never repeated ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"listener-body-secret-7731"),
        ("application/json", b'{"message": "listener-body-secret-7731", "code": 500}'),
    ],
)
def test_a_cluster_that_answers_with_something_else_is_not_quoted(
    client, api, company, listener, content_type, body
):
    listener.status, listener.reason = 500, "listener-reason-secret-7732"
    listener.content_type, listener.body = content_type, body
    client.force_login(company.olivia)

    page = client.post(
        reverse("cluster-register"),
        {
            "source": "manual",
            "name": "elsewhere",
            "environment": "dev",
            "tier": "tier-3",
            "binding": "groups",
            "api_url": listener.url,
            "ca_bundle": listener.ca_pem,
            "token": "some-token",
        },
    )
    rest = api("olivia").post(
        "/api/v1/clusters/",
        {
            "name": "elsewhere",
            "environment": "dev",
            "tier": "tier-3",
            "api_url": listener.url,
            "ca_bundle": listener.ca_pem,
            "token": "some-token",
        },
        format="json",
    )

    for text in (page.content.decode(), str(rest.json())):
        assert "500" in text
        assert "secret-7731" not in text and "secret-7732" not in text
    assert not Cluster.objects.exists()


def test_a_discovery_source_that_answers_with_something_else_is_not_quoted(
    client, company, listener
):
    client.force_login(company.olivia)

    answer = client.post(
        reverse("cluster-discovery-new"),
        {
            "name": "elsewhere",
            "kind": "cluster-api",
            "enabled": "on",
            "api_url": listener.url,
            "ca_bundle": listener.ca_pem,
            "namespace": "capi",
            "rules_text": "- name: '*'\n  environment: dev\n  tier: tier-3\n",
            "grace_hours": 24,
            "token": "some-token",
        },
    )

    assert answer.status_code == 400
    assert "secret-7731" not in answer.content.decode()


def test_a_webhook_receiver_that_refuses_is_not_quoted(listener):
    listener.status, listener.reason = 502, "listener-reason-secret-7732"

    with pytest.raises(webhooks.WebhookError) as refused_delivery:
        webhooks.post_signed(listener.url + "/hook", b"{}", "k" * 40, ca_pem=listener.ca_pem)

    assert str(refused_delivery.value) == "the receiver answered 502"
