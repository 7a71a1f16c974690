"""Cluster API discovery with real API servers: the management cluster serves Cluster API's CRD
and kubeconfig Secrets, read with deploy/rbac/warden-discovery.yaml's least-privilege token; the
workload cluster is a second API server on the same etcd."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
import yaml

from access.models import Grant
from clusters import discovery, services
from clusters.choices import DiscoveryStatus, DiscoveryTrigger
from clusters.models import Cluster, DiscoverySource
from tests.clusters.conftest import kubeconfig_for
from tests.clusters.real.conftest import status_listing_pods
from tests.clusters.test_discovery import RULES
from tests.k8s.control_plane import REPO, RealCluster

pytestmark = pytest.mark.django_db

CAPI_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusters.cluster.x-k8s.io"},
    "spec": {
        "group": "cluster.x-k8s.io",
        "scope": "Namespaced",
        "names": {"kind": "Cluster", "plural": "clusters", "singular": "cluster"},
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def wait_for(what: str, check, within_s: float = 30.0):
    deadline = time.monotonic() + within_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not there after {within_s:.0f}s"
        time.sleep(0.2)
    return found


def install_cluster_api(management: RealCluster, namespace: str) -> str:
    """Cluster API's Cluster CRD, a namespace for clusters, and the discovery reader's token."""
    management.apply_manifest(yaml.safe_dump(CAPI_CRD))
    collection = f"/apis/cluster.x-k8s.io/v1beta1/namespaces/{namespace}/clusters"
    management.call("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    wait_for("the Cluster API resource", lambda: management.call("GET", collection)[0] == 200)
    management.apply_manifest((REPO / "deploy" / "rbac" / "warden-discovery.yaml").read_text())

    def token() -> str:
        path = "/api/v1/namespaces/warden-system/secrets/warden-discovery-token"
        encoded = (management.call("GET", path)[1].get("data") or {}).get("token")
        return base64.b64decode(encoded).decode() if encoded else ""

    return str(wait_for("the warden-discovery token", token))


def add_capi_cluster(
    management: RealCluster, namespace: str, name: str, labels: dict, kubeconfig: str
) -> None:
    status, answer = management.call(
        "POST",
        f"/apis/cluster.x-k8s.io/v1beta1/namespaces/{namespace}/clusters",
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "Cluster",
            "metadata": {"name": name, "labels": labels},
            "spec": {"controlPlaneEndpoint": {"host": "127.0.0.1", "port": 6443}},
        },
    )
    assert status == 201, answer
    status, answer = management.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "metadata": {"name": f"{name}-kubeconfig"},
            "type": "cluster.x-k8s.io/secret",
            "data": {"value": base64.b64encode(kubeconfig.encode()).decode()},
        },
    )
    assert status == 201, answer


def test_a_cluster_listed_by_cluster_api_is_registered_and_reconciled(
    real_cluster, another_real_cluster, catalogue, people
):
    # given: the management cluster lists the workload cluster, with Warden's manager token
    namespace = f"capi-{secrets.token_hex(3)}"
    reader_token = install_cluster_api(real_cluster, namespace)
    workload = another_real_cluster
    add_capi_cluster(
        real_cluster,
        namespace,
        "prod-eu-1",
        {"env": "production"},
        kubeconfig_for(workload, token=workload.manager_token),
    )
    source = DiscoverySource.objects.create(
        name="capi-mgmt",
        kind="cluster-api",
        api_url=real_cluster.server_url,
        ca_bundle=real_cluster.ca_cert_pem.decode(),
        token=reader_token,
        namespace=namespace,
        rules=RULES,
    )

    # when
    run = discovery.discover(source.pk, DiscoveryTrigger.OPERATOR)

    # then: registered with the mapped environment, after the access check on the workload
    assert run.status == DiscoveryStatus.SUCCEEDED, run.error
    assert (run.found, run.registered, run.failed) == (1, 1, 0), run.problems
    registered = Cluster.objects.get(name="prod-eu-1")
    assert (registered.environment, registered.tier) == ("prod", "tier-0")
    assert registered.api_url == workload.server_url
    assert registered.discovered_key == f"{namespace}/prod-eu-1"

    # and its reconcile writes to the workload cluster only (its own --etcd-prefix)
    Grant.objects.create(team=people["payments"], role=catalogue["viewer"])
    reconciled = services.reconcile_cluster(registered.pk)
    assert reconciled.created == 1, reconciled.error
    assert status_listing_pods(workload, "alice") == 200
    assert status_listing_pods(real_cluster, "alice") == 403


def test_a_reader_token_without_the_discovery_role_is_told_what_to_bind(real_cluster):
    namespace = f"capi-{secrets.token_hex(3)}"
    install_cluster_api(real_cluster, namespace)
    nobody = real_cluster.token_for("nobody")

    problems = discovery.check_source_access(
        discovery.source_endpoint(
            DiscoverySource(
                name="capi-mgmt",
                kind="cluster-api",
                api_url=real_cluster.server_url,
                ca_bundle=real_cluster.ca_cert_pem.decode(),
                namespace=namespace,
            ),
            token=nobody,
        ),
        namespace,
    )

    assert len(problems) == 1, problems
    assert (
        "may not list clusters.cluster.x-k8s.io, get secrets in namespace " + namespace
    ) in problems[0]
