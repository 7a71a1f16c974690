"""Contract tests run unchanged against kubesim, the real kube-apiserver (tests/k8s/) or, with
WARDEN_E2E_KUBECONFIG, any cluster."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from kubernetes import client, config

REAL = os.environ.get("WARDEN_E2E_KUBECONFIG", "")


@dataclass
class Target:
    """A cluster reached through a kubeconfig, as any Kubernetes user would."""

    kubeconfig: str
    api: client.ApiClient
    sim: Any = None  # the kubesim cluster, for kubesim-only tests (faults, counters)
    people: dict[str, str] = field(default_factory=dict)  # the real server's static users

    def token_of(self, user: str) -> str:
        """A bearer token of a person with no access yet: on kube-apiserver one of its static
        users (tests/k8s/control_plane.PEOPLE), on kubesim the same name made there."""
        if self.sim is not None:
            return str(self.sim.add_user(user))
        if user not in self.people:
            pytest.skip(f"{user} is not a static user of this API server")
        return self.people[user]

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


TARGETS = [
    "kubesim",
    pytest.param("kube-apiserver", marks=pytest.mark.kube_apiserver),
]


@pytest.fixture(params=["WARDEN_E2E_KUBECONFIG"] if REAL else TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    """The cluster under contract: kubesim, the real kube-apiserver, or WARDEN_E2E_KUBECONFIG's."""
    if REAL:
        api = config.new_client_from_config(config_file=REAL)
        yield Target(REAL, api)
        return
    path = tmp_path / "kubeconfig"
    if request.param == "kube-apiserver":
        real = request.getfixturevalue("real_cluster")
        path.write_text(yaml.safe_dump(real.kubeconfig()))
        api = config.new_client_from_config(config_file=str(path))
        yield Target(str(path), api, people=dict(real.people))
        return
    sim = request.getfixturevalue("kube_cluster")()
    write_single_kubeconfig(path, sim, sim.server_url.rsplit("/clusters/", 1)[0])
    api = config.new_client_from_config(config_file=str(path))
    yield Target(str(path), api, sim)


def write_single_kubeconfig(path: Any, sim: Any, _server: str) -> None:
    import base64

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


@pytest.fixture
def kubesim_target(tmp_path: Any, kube_cluster: Any) -> Target:
    """kubesim alone, for what only it has (fault injection, request counters)."""
    if REAL:
        pytest.skip("fault injection and counters exist only on kubesim")
    sim = kube_cluster()
    path = tmp_path / "kubeconfig"
    write_single_kubeconfig(path, sim, sim.server_url.rsplit("/clusters/", 1)[0])
    return Target(str(path), config.new_client_from_config(config_file=str(path)), sim)


def eventually(check: Callable[[], bool], within_s: float = 15.0) -> bool:
    """True once `check()` is; False if it never is within `within_s` seconds.

    For what a real API server does a little later: it caches a token's successful
    authentication for 10s (kube-apiserver's token cache), so a revoked token is refused by the
    end of that, not at once.
    """
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True
