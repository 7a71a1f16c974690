"""Warden's real paths against the real kube-apiserver (tests/k8s/): register, reconcile, rotate.

The session's API server is registered as a Warden cluster through the same service as the
registration page, with the token of deploy/rbac/warden-manager.yaml's ServiceAccount, so every
call Warden makes here is made with exactly the access its manifest grants.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from clusters import services
from clusters.models import Cluster
from tests.clusters.conftest import official_client
from tests.k8s.control_plane import RealCluster


@pytest.fixture
def register(real_cluster: RealCluster, db: None) -> Callable[..., Cluster]:
    """register(environment="dev", ...) -> the real API server as a Warden Cluster."""

    def make(environment: str = "dev", tier: str = "tier-2", **fields: Any) -> Cluster:
        return services.register_cluster(
            name=f"real-{real_cluster.name}",
            environment=environment,
            tier=tier,
            api_url=real_cluster.server_url,
            token=fields.pop("token", real_cluster.manager_token),
            ca_bundle=real_cluster.ca_cert_pem.decode(),
            **fields,
        )

    return make


def as_user(real: RealCluster, token: str) -> k8s_client.ApiClient:
    """The official client with someone's token, as they would configure it."""
    config = k8s_client.Configuration()
    config.host = real.server_url
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.ca_cert_data = real.ca_cert_pem.decode()
    return k8s_client.ApiClient(config)


def status_listing_pods(real: RealCluster, person: str, namespace: str = "default") -> int:
    """What the API server answers `person` (a static-token user) listing pods: 200, 401, 403."""
    try:
        k8s_client.CoreV1Api(as_user(real, real.people[person])).list_namespaced_pod(namespace)
    except ApiException as exc:
        return int(exc.status)
    return 200


def legacy_token(real: RealCluster, name: str, namespace: str = "default") -> str:
    """A ServiceAccount with a long-lived token Secret, filled in by the token controller."""
    core = k8s_client.CoreV1Api(official_client(real))
    core.create_namespaced_service_account(
        namespace, k8s_client.V1ServiceAccount(metadata=k8s_client.V1ObjectMeta(name=name))
    )
    core.create_namespaced_secret(
        namespace,
        k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(
                name=f"{name}-token",
                annotations={"kubernetes.io/service-account.name": name},
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = core.read_namespaced_secret(f"{name}-token", namespace).data or {}
        if data.get("token"):
            return base64.b64decode(data["token"]).decode()
        time.sleep(0.1)
    raise AssertionError(f"the token controller did not fill {namespace}/{name}-token in 30s")
