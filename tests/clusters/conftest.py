"""Fixtures for the machine side: a Warden Cluster record bound to a fresh kubesim cluster."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client

from access.choices import RoleScope
from access.models import Person, Role, RoleDefinition, Team
from clusters.models import Cluster


def official_client(sim_cluster: Any) -> k8s_client.ApiClient:
    """The official client, configured as a user would, to look at what Warden wrote."""
    config = k8s_client.Configuration()
    config.host = sim_cluster.server_url
    config.api_key = {"BearerToken": sim_cluster.admin_token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    if sim_cluster.ca_cert_pem:
        pem = sim_cluster.ca_cert_pem
        config.ca_cert_data = pem.decode() if isinstance(pem, bytes) else pem
    return k8s_client.ApiClient(config)


@pytest.fixture
def make_cluster(kube_cluster: Any, db: None) -> Any:
    """make_cluster(environment="dev", ...) -> (Cluster record, kubesim cluster)."""

    def make(environment: str = "dev", tier: str = "tier-2", **fields: Any) -> tuple[Cluster, Any]:
        sim = kube_cluster()
        pem = sim.ca_cert_pem or b""
        cluster = Cluster.objects.create(
            name=sim.name,
            environment=environment,
            tier=tier,
            api_url=sim.server_url,
            ca_bundle=pem.decode() if isinstance(pem, bytes) else pem,
            token=sim.admin_token,
            **fields,
        )
        return cluster, sim

    return make


@pytest.fixture
def rbac(db: None) -> Any:
    """Read RBAC objects on a kubesim cluster with the official client."""

    class Reader:
        def bindings(self, sim: Any, namespace: str | None = None) -> dict[str, Any]:
            api = k8s_client.RbacAuthorizationV1Api(official_client(sim))
            if namespace is None:
                items = api.list_cluster_role_binding().items
            else:
                items = api.list_namespaced_role_binding(namespace).items
            return {b.metadata.name: b for b in items}

        def subjects(self, sim: Any, name: str, namespace: str | None = None) -> list[str]:
            binding = self.bindings(sim, namespace).get(name)
            if binding is None:
                return []
            return sorted(s.name for s in binding.subjects or [])

        def core(self, sim: Any) -> k8s_client.CoreV1Api:
            return k8s_client.CoreV1Api(official_client(sim))

        def api(self, sim: Any) -> k8s_client.RbacAuthorizationV1Api:
            return k8s_client.RbacAuthorizationV1Api(official_client(sim))

    return Reader()


@pytest.fixture
def catalogue(db: None) -> dict[str, Role]:
    """viewer -> view (cluster-wide), developer -> edit (namespaces), admin -> cluster-admin."""
    Role.objects.all().delete()  # the seeded defaults; these tests state their own
    viewer = Role.objects.create(name="viewer", display_name="Viewer", rank=10)
    RoleDefinition.objects.create(role=viewer, cluster_role="view", scope=RoleScope.CLUSTER)
    developer = Role.objects.create(name="developer", display_name="Developer", rank=20)
    RoleDefinition.objects.create(role=developer, cluster_role="edit")
    RoleDefinition.objects.create(role=developer, environment="prod", cluster_role="view")
    admin = Role.objects.create(name="admin", display_name="Admin", rank=40)
    RoleDefinition.objects.create(role=admin, cluster_role="cluster-admin", scope=RoleScope.CLUSTER)
    return {"viewer": viewer, "developer": developer, "admin": admin}


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    """alice and bob in payments, carol in sre; Person and Team rows as a sync leaves them."""
    made: dict[str, Any] = {}
    for name in ("alice", "bob", "carol"):
        made[name] = Person.objects.create(dn=f"uid={name},ou=people", username=name)
    for team_name, members in (("payments", ["alice", "bob"]), ("sre", ["carol"])):
        team = Team.objects.create(dn=f"cn={team_name},ou=groups", name=team_name)
        for member in members:
            team.memberships.create(person=made[member], is_direct=True)
        made[team_name] = team
    return made


def kubeconfig_for(*sims: Any, token: str | None = None, ca_pem: str | None = None) -> str:
    """A kubeconfig with one context per kubesim cluster, as `kubectl config view --raw` gives."""
    import base64

    import yaml

    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": f"{sims[0].name}-ctx" if len(sims) == 1 else "",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for sim in sims:
        pem = ca_pem if ca_pem is not None else (sim.ca_cert_pem or b"").decode()
        doc["clusters"].append(
            {
                "name": sim.name,
                "cluster": {
                    "server": sim.server_url,
                    "certificate-authority-data": base64.b64encode(pem.encode()).decode(),
                },
            }
        )
        doc["users"].append(
            {"name": f"{sim.name}-warden", "user": {"token": token or sim.admin_token}}
        )
        doc["contexts"].append(
            {
                "name": f"{sim.name}-ctx",
                "context": {"cluster": sim.name, "user": f"{sim.name}-warden"},
            }
        )
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def developer(django_user_model: Any) -> Any:
    """dave, a developer who is not an operator."""
    return django_user_model.objects.create_user("dave")
