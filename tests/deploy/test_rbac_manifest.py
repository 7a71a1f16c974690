"""deploy/rbac/warden-manager.yaml gives Warden exactly what it needs on a managed cluster.

Applied with kubectl to a kubesim cluster (real RBAC evaluation and escalation checks), its
token passes Warden's access check and reconciles grants to built-in and Warden-defined roles;
without `bind` and `escalate` the same reconcile is refused, as kube-apiserver refuses it.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client

from access.choices import RoleScope
from access.models import Grant, Role, RoleDefinition
from clusters import services
from clusters.k8s import Endpoint
from clusters.models import Cluster
from tests.clusters.conftest import official_client
from tests.contract.conftest import write_single_kubeconfig

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed"),
]
MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "warden-manager.yaml"
SUBJECT = "system:serviceaccount:warden-system:warden-manager"

# What the managed service accounts (clusters/serviceaccounts/) ask of a cluster, read from
# that code: (verb, group, resource, subresource).
SERVICE_ACCOUNT_CALLS = [
    ("list", "", "serviceaccounts", ""),  # the reconciler lists Warden's ServiceAccounts
    ("create", "", "serviceaccounts", ""),
    ("update", "", "serviceaccounts", ""),  # PUT; also adopting a legacy token's account
    ("delete", "", "serviceaccounts", ""),
    ("get", "", "serviceaccounts", ""),
    ("create", "", "serviceaccounts", "token"),  # TokenRequest bound to a Secret
    ("create", "", "secrets", ""),  # the per-generation bound Secret; delivered Secrets
    ("get", "", "secrets", ""),
    ("update", "", "secrets", ""),
    ("delete", "", "secrets", ""),  # revokes a generation's token
    ("list", "", "secrets", ""),  # the legacy long-lived token report
    ("create", "authentication.k8s.io", "tokenreviews", ""),
]


def apply_manifest(tmp_path: Path, sim, text: str) -> str:
    """kubectl apply the manifest; returns the token the cluster issued to warden-manager."""
    config = tmp_path / f"{sim.name}.kubeconfig"
    write_single_kubeconfig(config, sim, "")
    applied = subprocess.run(
        ["kubectl", "--kubeconfig", str(config), "apply", "--validate=false", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    core = k8s_client.CoreV1Api(official_client(sim))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        secret = core.read_namespaced_secret("warden-manager-token", "warden-system")
        if (secret.data or {}).get("token"):
            return base64.b64decode(secret.data["token"]).decode()
        time.sleep(0.2)
    raise AssertionError("the token controller did not fill warden-manager-token")


def register(sim, token: str) -> Cluster:
    return Cluster.objects.create(
        name=sim.name,
        environment="dev",
        tier="tier-2",
        api_url=sim.server_url,
        ca_bundle=sim.ca_cert_pem.decode(),
        token=token,
    )


def without_bind_and_escalate(text: str) -> str:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "warden-manager":
            doc["rules"] = [r for r in doc["rules"] if "bind" not in r["verbs"]]
    return yaml.safe_dump_all(docs)


@pytest.fixture
def grants(catalogue, people):
    """viewer (view), developer (edit), admin (cluster-admin) and auditor, a Warden-defined
    role whose rules Warden itself does not hold."""
    auditor = Role.objects.create(name="auditor", display_name="Auditor", rank=15)
    RoleDefinition.objects.create(
        role=auditor,
        scope=RoleScope.CLUSTER,
        rules=[{"apiGroups": [""], "resources": ["events", "pods/log"], "verbs": ["get", "list"]}],
    )
    for role in ("viewer", "admin", "auditor"):
        Grant.objects.create(team=people["sre"], role=Role.objects.get(name=role))
    Grant.objects.create(
        person=people["alice"], role=catalogue["developer"], namespaces=["default"]
    )


def test_the_shipped_role_passes_the_access_check_and_reconciles_every_kind_of_grant(
    tmp_path, kube_cluster, grants, rbac
):
    sim = kube_cluster()
    token = apply_manifest(tmp_path, sim, MANIFEST.read_text())
    endpoint = Endpoint(api_url=sim.server_url, token=token, ca_pem=sim.ca_cert_pem.decode())
    assert services.check_access(endpoint) == []

    run = services.reconcile_cluster(register(sim, token).pk)

    assert run is not None and run.status == "succeeded", run.error if run else None
    assert rbac.subjects(sim, "warden-admin") == ["sre"]  # bound to cluster-admin
    assert rbac.subjects(sim, "warden-auditor") == ["sre"]  # Warden's own ClusterRole
    assert rbac.subjects(sim, "warden-developer", "default") == ["alice"]
    role = rbac.api(sim).read_cluster_role("warden-auditor")
    assert role.rules[0].resources == ["events", "pods/log"]


def test_without_bind_and_escalate_the_check_says_so_and_kubernetes_refuses_the_grants(
    tmp_path, kube_cluster, grants, rbac
):
    sim = kube_cluster()
    token = apply_manifest(tmp_path, sim, without_bind_and_escalate(MANIFEST.read_text()))
    endpoint = Endpoint(api_url=sim.server_url, token=token, ca_pem=sim.ca_cert_pem.decode())

    problems = services.check_access(endpoint)
    assert len(problems) == 1
    assert "bind clusterroles, escalate clusterroles" in problems[0]
    assert "Least privilege on managed clusters" in problems[0]

    run = services.reconcile_cluster(register(sim, token).pk)
    assert run is not None and run.status == "failed"
    # kube-apiserver's escalation check: Warden would hand out access it does not hold
    assert "attempting to grant RBAC permissions not currently held" in run.error
    assert "warden-admin" not in rbac.bindings(sim)


def test_it_allows_every_call_managed_service_accounts_make_and_nothing_on_workloads(
    tmp_path, kube_cluster
):
    sim = kube_cluster()
    apply_manifest(tmp_path, sim, MANIFEST.read_text())
    authz = k8s_client.AuthorizationV1Api(official_client(sim))

    def allowed(verb: str, group: str, resource: str, sub: str = "") -> bool:
        review = k8s_client.V1SubjectAccessReview(
            spec=k8s_client.V1SubjectAccessReviewSpec(
                user=SUBJECT,
                groups=["system:serviceaccounts", "system:authenticated"],
                resource_attributes=k8s_client.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource, subresource=sub, namespace="apps"
                ),
            )
        )
        return bool(authz.create_subject_access_review(review).status.allowed)

    for call in SERVICE_ACCOUNT_CALLS:
        assert allowed(*call), call
    # least privilege: nothing Warden does not do
    assert not allowed("patch", "rbac.authorization.k8s.io", "rolebindings")
    assert not allowed("create", "", "pods")
    assert not allowed("get", "", "pods", "exec")
    assert not allowed("delete", "", "namespaces")
    assert not allowed("update", "apps", "deployments")
