"""Contract tests run unchanged against kubesim or, with WARDEN_E2E_KUBECONFIG, a real cluster."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config

REAL = os.environ.get("WARDEN_E2E_KUBECONFIG", "")


@dataclass
class Target:
    """A cluster reached through a kubeconfig, as any Kubernetes user would."""

    kubeconfig: str
    api: client.ApiClient
    sim: Any = None  # the kubesim cluster, for kubesim-only tests (faults, counters)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    def as_token(self, token: str) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.api.configuration.host
        configuration.ssl_ca_cert = self.api.configuration.ssl_ca_cert
        configuration.ca_cert_data = self.api.configuration.ca_cert_data
        configuration.verify_ssl = self.api.configuration.verify_ssl
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)


@pytest.fixture
def target(tmp_path, kube_cluster) -> Iterator[Target]:
    if REAL:
        api = config.new_client_from_config(config_file=REAL)
        yield Target(REAL, api)
        return
    sim = kube_cluster()
    from kubesim import KubeSim  # noqa: F401 - the type the fixture hands out

    kubesim_server = sim.server_url.rsplit("/clusters/", 1)[0]
    path = tmp_path / "kubeconfig"
    _write_single(path, sim, kubesim_server)
    yield Target(str(path), config.new_client_from_config(config_file=str(path)), sim)


def _write_single(path: Any, sim: Any, _server: str) -> None:
    import base64

    import yaml

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": sim.name,
        "clusters": [
            {
                "name": sim.name,
                "cluster": {
                    "server": sim.server_url,
                    "certificate-authority-data": base64.b64encode(sim.ca_cert_pem).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": sim.admin_token}}],
        "contexts": [{"name": sim.name, "context": {"cluster": sim.name, "user": "admin"}}],
    }
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture
def namespace(target: Target) -> Iterator[str]:
    name = f"contract-{secrets.token_hex(3)}"
    target.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.ApiException):
        target.core.delete_namespace(name)


def kubesim_only(target: Target) -> None:
    if target.sim is None:
        pytest.skip("fault injection and counters exist only on kubesim")
