"""Differential fidelity: the same requests against kubesim and the real kube-apiserver, compared
by status code, Status reason and the shape of each body (keys and value types, not values:
names, uids, timestamps and resourceVersions differ by nature). The real server is the
reference; a difference is a kubesim bug to fix, or one listed in OUT_OF_SCOPE with its reason
(also in the kubesim page, docs/kubesim.md)."""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

RBAC = "/apis/rbac.authorization.k8s.io/v1"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

_WORKLOAD_FIELDS = (
    "the managed fields of kinds kubesim does not know field by field (workloads, which Warden "
    "only dry-runs): their lists are one field, not one per merge key, and selectors are walked"
)
# (request, where in the shape: a prefix) -> why kubesim differs there on purpose.
OUT_OF_SCOPE: dict[tuple[str, str], str] = {
    ("deployment dry run", ".metadata.managedFields[0].fieldsV1"): _WORKLOAD_FIELDS,
    ("service dry run", ".metadata.managedFields[0].fieldsV1"): _WORKLOAD_FIELDS,
    ("self subject review", ".status.userInfo.uid"): (
        "a user's uid comes from how the server authenticates it (the real server's static token "
        "file names one for its admin; kubesim's admin has none, as with a client certificate)"
    ),
}


@dataclass
class Step:
    """One request: what it is called in a difference, and what is sent."""

    name: str
    method: str
    path: str
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


def steps(ns: str) -> list[Step]:
    """What Warden, the contract suite and kubectl send, in an order that works on both servers."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "devs", "labels": {"app.kubernetes.io/managed-by": "warden"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}],
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{ns}-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "robot-gen1"},
        "type": "Opaque",
    }
    in_ns = f"{RBAC}/namespaces/{ns}/rolebindings"
    labels = {"app": "web"}
    pod = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80}]},
    }
    impersonate = {"Impersonate-User": "mallory"}
    access = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": ns}},
    }
    return [
        Step("version", "GET", "/version"),
        Step("core discovery", "GET", "/api"),
        Step("group discovery", "GET", "/apis"),
        Step("core v1 resources", "GET", "/api/v1"),
        Step("rbac resources", "GET", RBAC),
        Step("unknown path", "GET", "/apis/nothing.example.com/v1"),
        Step("namespace create", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}}),
        Step("namespace again", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}}),
        Step("namespace get", "GET", f"/api/v1/namespaces/{ns}"),
        Step("bad name", "POST", "/api/v1/namespaces", {"metadata": {"name": "Not_Valid"}}),
        Step("binding create", "POST", in_ns, binding),
        Step("binding exists", "POST", in_ns, binding),
        Step("binding get", "GET", f"{in_ns}/devs"),
        Step("binding missing", "GET", f"{in_ns}/nobody"),
        Step(
            "binding list by label",
            "GET",
            f"{in_ns}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dwarden&limit=500",
        ),
        Step("binding list page", "GET", f"{in_ns}?limit=1"),
        Step("bad label selector", "GET", f"{in_ns}?labelSelector=a%20in%20(b"),
        Step("malformed continue", "GET", f"{in_ns}?limit=1&continue=bm90LWEtdG9rZW4="),
        Step(
            "binding stale update",
            "PUT",
            f"{in_ns}/devs",
            {**binding, "metadata": {**binding["metadata"], "resourceVersion": "1"}},
        ),
        Step(
            "roleRef change",
            "PUT",
            f"{in_ns}/devs",
            {**binding, "roleRef": {**binding["roleRef"], "name": "edit"}},
        ),
        Step(
            "binding merge patch",
            "PATCH",
            f"{in_ns}/devs",
            {"metadata": {"labels": {"team": "a"}}},
            "application/merge-patch+json",
        ),
        Step(
            "binding strategic patch",
            "PATCH",
            f"{in_ns}/devs",
            {"metadata": {"annotations": {"owner": "sre"}}},
            "application/strategic-merge-patch+json",
        ),
        Step(
            "binding json patch",
            "PATCH",
            f"{in_ns}/devs",
            [{"op": "replace", "path": "/subjects/0/name", "value": "ops"}],
            "application/json-patch+json",
        ),
        Step(
            "binding bad patch type",
            "PATCH",
            f"{in_ns}/devs",
            {"metadata": {}},
            "text/plain",
        ),
        Step(
            "binding server-side apply",
            "PATCH",
            f"{in_ns}/devs2?fieldManager=warden",
            {**binding, "metadata": {"name": "devs2"}},
            "application/apply-patch+yaml",
        ),
        Step(
            "apply without manager",
            "PATCH",
            f"{in_ns}/devs2",
            {**binding, "metadata": {"name": "devs2"}},
            "application/apply-patch+yaml",
        ),
        Step(
            "unknown field strict",
            "POST",
            f"{in_ns}?fieldValidation=Strict",
            {**binding, "metadata": {"name": "devs3"}, "spec": {}},
        ),
        Step(
            "binding dry run",
            "POST",
            f"{in_ns}?dryRun=All",
            {**binding, "metadata": {"name": "dry"}},
        ),
        Step("forbidden list", "GET", f"{in_ns}", headers=impersonate),
        Step("binding by field", "GET", f"{in_ns}?fieldSelector=metadata.name%3Ddevs"),
        Step("binding table", "GET", in_ns, headers={"Accept": TABLE}),
        Step("namespace table", "GET", f"/api/v1/namespaces/{ns}", headers={"Accept": TABLE}),
        Step(
            "apply by another manager",
            "PATCH",
            f"{in_ns}/devs2?fieldManager=other",
            {
                **binding,
                "metadata": {"name": "devs2", "labels": {"app.kubernetes.io/managed-by": "x"}},
            },
            "application/apply-patch+yaml",
        ),
        Step(
            "apply forced",
            "PATCH",
            f"{in_ns}/devs2?fieldManager=other&force=true",
            {
                **binding,
                "metadata": {"name": "devs2", "labels": {"app.kubernetes.io/managed-by": "x"}},
            },
            "application/apply-patch+yaml",
        ),
        Step("binding watch", "GET", f"{in_ns}?watch=true&resourceVersion=0&timeoutSeconds=1"),
        Step("openapi root", "GET", "/openapi/v3"),
        Step(
            "deployment dry run",
            "POST",
            f"/apis/apps/v1/namespaces/{ns}/deployments?dryRun=All",
            deployment,
        ),
        Step("service dry run", "POST", f"/api/v1/namespaces/{ns}/services?dryRun=All", service),
        Step("clusterrole create", "POST", f"{RBAC}/clusterroles", role),
        Step("missing namespace", "POST", f"{RBAC}/namespaces/nowhere-{ns}/rolebindings", binding),
        Step("serviceaccount create", "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", account),
        Step("secret create", "POST", f"/api/v1/namespaces/{ns}/secrets", secret),
        Step(
            "token request",
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        ),
        Step(
            "token request too short",
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 60},
            },
        ),
        Step(
            "token review",
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": "nope"},
            },
        ),
        Step(
            "self subject review",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        ),
        Step(
            "access review",
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            access,
        ),
        Step(
            "access review impersonated",
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            access,
            headers=impersonate,
        ),
        Step(
            "subject access review",
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "alice",
                    "groups": ["devs"],
                    "resourceAttributes": access["spec"]["resourceAttributes"],
                },
            },
        ),
        Step(
            "binding delete collection",
            "DELETE",
            f"{in_ns}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dx",
        ),
        Step("binding delete", "DELETE", f"{in_ns}/devs"),
        Step("binding delete again", "DELETE", f"{in_ns}/devs"),
        Step("clusterrole delete", "DELETE", f"{RBAC}/clusterroles/{ns}-reader"),
        Step("default namespace delete", "DELETE", "/api/v1/namespaces/default"),
        Step("namespace delete", "DELETE", f"/api/v1/namespaces/{ns}"),
    ]


def call(cluster: Any, step: Step) -> tuple[int, Any]:
    """One request over HTTPS with the admin's token, as any client sends it."""
    data = None
    if step.body is not None:
        data = json.dumps(step.body).encode()
    request = urllib.request.Request(
        cluster.server_url + step.path,
        data=data,
        method=step.method,
        headers={
            "Authorization": f"Bearer {cluster.admin_token}",
            "Content-Type": step.content_type,
            "Accept": "application/json",
            **(step.headers or {}),
        },
    )
    pem = cluster.ca_cert_pem
    context = ssl.create_default_context(cadata=pem.decode() if isinstance(pem, bytes) else pem)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            raw, status = answer.read(), answer.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    if "watch=true" in step.path:  # one event a line: the first is what is compared
        raw = raw.split(b"\n", 1)[0]
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def shape(value: Any) -> Any:
    """Keys and value types: what a client's decoder depends on."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def differences(where: str, real: Any, sim: Any) -> list[str]:
    """Where kubesim's shape differs from the real one's (missing keys, extra keys, types)."""
    if isinstance(real, dict) and isinstance(sim, dict):
        found = []
        for key in sorted(set(real) | set(sim)):
            path = f"{where}.{key}"
            if key not in sim:
                found.append(f"{path}: missing")
            elif key not in real:
                found.append(f"{path}: extra")
            else:
                found += differences(path, real[key], sim[key])
        return found
    if isinstance(real, list) and isinstance(sim, list):
        if real and sim:
            return differences(f"{where}[0]", real[0], sim[0])
        return [] if bool(real) == bool(sim) else [f"{where}: {len(real)} vs {len(sim)} items"]
    return [] if real == sim else [f"{where}: {real} vs {sim}"]


# Lists and discovery documents whose items differ by what each server serves, not by shape.
SERVED_SETS = {"core v1 resources", "rbac resources", "group discovery"}


def compare(step: Step, real: tuple[int, Any], sim: tuple[int, Any]) -> list[str]:
    found = []
    if real[0] != sim[0]:
        found.append(f"status {real[0]} vs {sim[0]}")
    real_body, sim_body = real[1], sim[1]
    if isinstance(real_body, dict) and isinstance(sim_body, dict):
        statuses = "Status" in (real_body.get("kind"), sim_body.get("kind"))
        if statuses and real_body.get("reason") != sim_body.get("reason"):
            found.append(f"reason {real_body.get('reason')} vs {sim_body.get('reason')}")
        if step.name == "openapi root":  # which group versions: what each server serves
            real_body = real_body["paths"]["api/v1"]
            sim_body = sim_body["paths"]["api/v1"]
        if step.name in SERVED_SETS:
            real_body = {k: v for k, v in real_body.items() if k not in ("groups", "resources")}
            sim_body = {k: v for k, v in sim_body.items() if k not in ("groups", "resources")}
    found += differences("", shape(real_body), shape(sim_body))
    return [
        f"{step.name} ({step.method} {step.path}): {d}"
        for d in found
        if not any(name == step.name and d.startswith(where) for name, where in OUT_OF_SCOPE)
    ]


@pytest.fixture
def both(request: Any, kube_cluster: Any) -> tuple[Any, Any]:
    """(the real kube-apiserver, a fresh kubesim cluster)."""
    try:
        real = request.getfixturevalue("real_cluster")
    except pytest.FixtureLookupError:
        pytest.skip("no real kube-apiserver fixture here (tests/fixtures/kube_apiserver.py)")
    major, minor = call(real, Step("version", "GET", "/version"))[1]["gitVersion"][1:].split(".")[
        :2
    ]
    return real, kube_cluster(version=f"{major}.{minor}")


@pytest.mark.kube_apiserver
def test_kubesim_answers_every_request_as_the_real_kube_apiserver_does(both):
    real, sim = both
    ns = f"diff-{secrets.token_hex(3)}"

    found = []
    for step in steps(ns):
        found += compare(step, call(real, step), call(sim, step))

    assert found == [], "\n".join(found)
