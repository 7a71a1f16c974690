"""The "Why forbidden?" round trip in a real browser: a refusal from a kubesim cluster, pasted
into the page, answered with the smallest role and a prefilled request link."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from playwright.sync_api import expect

from tests.e2e.conftest import contrast_failures, log_in


def refusal(sim, username: str) -> str:
    """Ask the cluster as `username` (who holds nothing there) and keep its forbidden message."""
    config = k8s_client.Configuration()
    config.host = sim.server_url
    config.api_key = {"BearerToken": sim.add_user(username)}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.ca_cert_data = sim.ca_cert_pem.decode()
    api = k8s_client.CoreV1Api(k8s_client.ApiClient(config))
    with pytest.raises(ApiException) as refused:
        api.read_namespaced_pod_log("web-0", "payments")
    return json.loads(refused.value.body)["message"]


def test_a_developer_pastes_a_refusal_and_gets_the_smallest_role_to_request(
    page, developer, make_cluster, catalogue, screenshot
):
    cluster, sim = make_cluster("dev")
    make_cluster("prod")
    message = refusal(sim, "alice")
    assert 'cannot get resource "pods/log"' in message
    log_in(page, developer["username"], developer["password"])

    page.get_by_role("link", name="Why forbidden?").click()
    page.get_by_label("Kubernetes error message").fill(message)
    page.get_by_label("Cluster").select_option(cluster.name)
    page.get_by_role("button", name="Explain").click()

    answer = page.get_by_role("heading", name=re.compile("The smallest role that allows it"))
    expect(answer).to_have_text("The smallest role that allows it: Viewer")
    expect(page.get_by_role("heading", name="What the cluster refused")).to_be_focused()
    link = page.get_by_role("link", name=f"Request Viewer on {cluster.name} in payments")
    href = urlsplit(link.get_attribute("href"))
    assert href.path == "/requests/new"
    assert parse_qs(href.query) == {
        "role": ["viewer"],
        "cluster": [cluster.name],
        "namespace": ["payments"],
    }
    # htmx swapped the answer in and put the question in the address, so it can be shared
    expect(page).to_have_url(re.compile(r"/why-forbidden/\?message="))
    expect(page.get_by_label("Kubernetes error message")).to_have_value(message)
    assert contrast_failures(page) == []
    screenshot("answer")

    page.reload()
    expect(answer).to_have_text("The smallest role that allows it: Viewer")
