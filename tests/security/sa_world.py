"""What the service-account attacks share: declaring through the page and the API, and looking
at a kubesim cluster for what Warden wrote there."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from access.models import Role
from tests.clusters.conftest import official_client


def api_body(*clusters: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "deployer",
        "namespace": "default",
        "owner_team": "payments",
        "roles": ["developer"],
        "clusters": [c.name for c in clusters],
        # within prod's longest duration (one day): a token is access for its lifetime
        "rotation_period": "12h",
        "grace_period": "1h",
        "token_lifetime": "20h",
        "show_to_owner": True,
    }
    data.update(overrides)
    return data


def page_form(team: Any, *clusters: Any, roles: tuple[str, ...] = ("developer",), **overrides: Any):
    data = {
        "name": "deployer",
        "namespace": "default",
        "owner_team": team.pk,
        "roles": [Role.objects.get(name=name).pk for name in roles],
        "namespaces": "",
        "clusters": ", ".join(c.name for c in clusters),
        "cluster_selector": "",
        "rotation_period": "12h",
        "grace_period": "1h",
        "token_lifetime": "20h",
        "show_to_owner": "on",
    }
    data.update(overrides)
    return data


def declare_on_page(web: Any, form: dict[str, Any]) -> Any:
    return web.post(reverse("sa-create"), form)


def service_account_on(sim: Any, name: str = "deployer", namespace: str = "default") -> Any:
    """The ServiceAccount as the cluster holds it, or None."""
    try:
        return k8s_client.CoreV1Api(official_client(sim)).read_namespaced_service_account(
            name, namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def bindings_naming(sim: Any, name: str = "deployer") -> list[str]:
    """Every RoleBinding and ClusterRoleBinding on the cluster that names the account."""
    rbac = k8s_client.RbacAuthorizationV1Api(official_client(sim))
    found = []
    for binding in [
        *rbac.list_role_binding_for_all_namespaces().items,
        *rbac.list_cluster_role_binding().items,
    ]:
        for subject in binding.subjects or []:
            if subject.kind == "ServiceAccount" and subject.name == name:
                found.append(binding.metadata.name)
    return found
