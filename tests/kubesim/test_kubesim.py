"""The emulator's own parts: RBAC matching, selectors, the CLI and the control API."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.request

import pytest
import yaml

from kubesim.rbac import Attributes, UserInfo, authorize, rule_allows
from kubesim.store import ApiError, parse_label_selector

POD_LOG = Attributes(verb="get", resource="pods", subresource="log", namespace="n", name="p")


@pytest.mark.parametrize(
    ("rule", "attrs", "allowed"),
    [
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, POD_LOG, True),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, POD_LOG, False),
        ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}, POD_LOG, True),
        ({"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}, POD_LOG, True),
        (
            {
                "apiGroups": [""],
                "resources": ["pods/log"],
                "verbs": ["get"],
                "resourceNames": ["q"],
            },
            POD_LOG,
            False,
        ),
        ({"apiGroups": ["apps"], "resources": ["pods/log"], "verbs": ["get"]}, POD_LOG, False),
        (
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            Attributes(verb="get", path="/healthz", resource_request=False),
            True,
        ),
        (
            {"nonResourceURLs": ["/metrics/*"], "verbs": ["get"]},
            Attributes(verb="get", path="/metrics/x", resource_request=False),
            True,
        ),
        (
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            Attributes(verb="get", path="/version", resource_request=False),
            False,
        ),
        ({"nonResourceURLs": ["*"], "verbs": ["*"]}, POD_LOG, False),
    ],
)
def test_rules_match_as_kubernetes_documents(rule, attrs, allowed):
    assert rule_allows(rule, attrs) is allowed


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b,c!=d", {"a": "b", "c": "e"}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
    ],
)
def test_label_selectors(selector, labels, matches):
    assert parse_label_selector(selector)(labels) is matches


def test_a_bad_selector_is_a_400():
    with pytest.raises(ApiError) as bad:
        parse_label_selector("a in x")
    assert bad.value.code == 400


def test_masters_may_do_anything_and_others_only_what_is_bound(kube_cluster):
    cluster = kube_cluster()
    assert authorize(cluster.store, UserInfo("root", ("system:masters",)), POD_LOG)
    assert not authorize(cluster.store, UserInfo("alice", ("system:authenticated",)), POD_LOG)
    discovery = Attributes(verb="get", path="/version", resource_request=False)
    assert authorize(cluster.store, UserInfo("alice", ("system:authenticated",)), discovery)


def start_cli(*options: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m kubesim OPTIONS`, and its ready line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubesim", *options], stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline() if process.stdout else ""


def test_the_cli_serves_https_and_writes_a_kubeconfig_that_trusts_its_ca(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    process, line = start_cli("--clusters", "dev,prod", "--kubeconfig", str(kubeconfig))
    try:
        assert "kubesim ready on https://127.0.0.1:" in line
        url = line.split(" on ")[1].split()[0]
        doc = yaml.safe_load(kubeconfig.read_text())
        assert [c["name"] for c in doc["contexts"]] == ["dev", "prod"]
        token = doc["users"][0]["user"]["token"]
        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
        tls = ssl.create_default_context(cadata=ca.decode())
        request = urllib.request.Request(
            doc["clusters"][0]["cluster"]["server"] + "/version",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=5, context=tls) as response:
            assert json.load(response)["major"] == "1"

        # the control API adds a cluster and sets faults from another process
        add = urllib.request.Request(
            url + "/_kubesim/clusters", data=b'{"name": "extra"}', method="POST"
        )
        with urllib.request.urlopen(add, timeout=5, context=tls) as response:
            assert json.load(response)["clusters"][0]["name"] == "extra"
        faults = urllib.request.Request(
            url + "/_kubesim/clusters/extra/faults", data=b'{"latency_s": 0.01}', method="PUT"
        )
        with urllib.request.urlopen(faults, timeout=5, context=tls) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_cli_serves_plain_http_only_when_asked(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    process, line = start_cli("--http", "--clusters", "dev", "--kubeconfig", str(kubeconfig))
    try:
        assert "kubesim ready on http://127.0.0.1:" in line
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        assert cluster["server"].startswith("http://")
        assert "certificate-authority-data" not in cluster
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_custom_resources_can_be_served(kube_cluster):
    from kubernetes import client

    cluster = kube_cluster()
    cluster.register_kind("Cluster", "clusters", "cluster.x-k8s.io", "v1beta1")
    cluster.apply({"kind": "Namespace", "metadata": {"name": "capi"}})
    configuration = client.Configuration()
    configuration.host = cluster.server_url
    configuration.ca_cert_data = cluster.ca_cert_pem.decode()
    configuration.api_key = {"BearerToken": cluster.admin_token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    api.create_namespaced_custom_object(
        "cluster.x-k8s.io",
        "v1beta1",
        "capi",
        "clusters",
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "Cluster",
            "metadata": {"name": "prod-eu"},
        },
    )
    listed = api.list_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", "capi", "clusters")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["prod-eu"]


def test_a_continue_token_is_400_when_malformed_and_410_when_its_snapshot_is_gone(kube_cluster):
    cluster = kube_cluster()
    kind = cluster.store.kinds["clusterroles"]
    first = cluster.store.list(kind, "", limit=2)
    token = first["metadata"]["continue"]

    with pytest.raises(ApiError) as malformed:
        cluster.store.list(kind, "", limit=2, continue_token="bm90LWEtdG9rZW4=")
    cluster.store.snapshots.clear()  # what compaction does to old snapshots
    with pytest.raises(ApiError) as expired:
        cluster.store.list(kind, "", limit=2, continue_token=token)

    assert (malformed.value.code, malformed.value.reason) == (400, "BadRequest")
    assert (expired.value.code, expired.value.reason) == (410, "Expired")
