"""What Warden relies on from the Kubernetes API, checked with the official client only."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.contract.conftest import eventually

RBAC = "rbac.authorization.k8s.io"


def binding(name, role, subjects, namespace=None, labels=None, kind="ClusterRole"):
    meta = client.V1ObjectMeta(name=name, namespace=namespace, labels=labels)
    ref = client.V1RoleRef(api_group=RBAC, kind=kind, name=role)
    subs = [
        client.RbacV1Subject(
            kind=k, name=n, api_group=RBAC if k != "ServiceAccount" else None, namespace=ns
        )
        for k, n, ns in subjects
    ]
    if namespace:
        return client.V1RoleBinding(metadata=meta, role_ref=ref, subjects=subs)
    return client.V1ClusterRoleBinding(metadata=meta, role_ref=ref, subjects=subs)


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_discovery_and_version(target):
    version = client.VersionApi(target.api).get_code()
    assert version.major == "1"
    groups = {g.name for g in client.ApisApi(target.api).get_api_versions().groups}
    assert RBAC in groups and "authorization.k8s.io" in groups
    resources = {
        r.name for r in client.RbacAuthorizationV1Api(target.api).get_api_resources().resources
    }
    assert {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} <= resources


def test_bootstrap_roles_exist_and_aggregate(target):
    names = {r.metadata.name for r in target.rbac.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view"} <= names
    view = target.rbac.read_cluster_role("view")
    assert view.aggregation_rule is not None
    assert any("pods" in (rule.resources or []) for rule in view.rules)
    edit = target.rbac.read_cluster_role("edit")
    # edit aggregates into admin, view into edit: admin can get pods too
    assert any("pods" in (r.resources or []) and "get" in r.verbs for r in edit.rules)


def test_create_get_update_delete_and_their_status_codes(target, namespace):
    rbac = target.rbac
    created = rbac.create_namespaced_role_binding(
        namespace, binding("b1", "view", [("User", "alice", None)], namespace)
    )
    assert created.metadata.resource_version

    with pytest.raises(ApiException) as exists:
        rbac.create_namespaced_role_binding(
            namespace, binding("b1", "view", [("User", "alice", None)], namespace)
        )
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"

    current = rbac.read_namespaced_role_binding("b1", namespace)
    current.subjects[0].name = "bob"
    updated = rbac.replace_namespaced_role_binding("b1", namespace, current)
    assert updated.metadata.resource_version != created.metadata.resource_version

    stale = current
    stale.metadata.resource_version = created.metadata.resource_version
    stale.subjects[0].name = "carol"
    with pytest.raises(ApiException) as conflict:
        rbac.replace_namespaced_role_binding("b1", namespace, stale)
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"

    rbac.delete_namespaced_role_binding("b1", namespace)
    with pytest.raises(ApiException) as gone:
        rbac.read_namespaced_role_binding("b1", namespace)
    body = status_of(gone.value)
    assert gone.value.status == 404
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["details"] == {"name": "b1", "group": RBAC, "kind": "rolebindings"}


def test_role_ref_cannot_change(target, namespace):
    target.rbac.create_namespaced_role_binding(
        namespace, binding("b", "view", [("User", "a", None)], namespace)
    )
    current = target.rbac.read_namespaced_role_binding("b", namespace)
    current.role_ref.name = "edit"
    with pytest.raises(ApiException) as invalid:
        target.rbac.replace_namespaced_role_binding("b", namespace, current)
    assert invalid.value.status == 422
    message = status_of(invalid.value)["message"]
    assert "roleRef: Invalid value: " in message and "field is immutable" in message


def test_bad_names_are_invalid(target):
    with pytest.raises(ApiException) as invalid:
        target.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name="Not_Valid"))
        )
    assert invalid.value.status == 422 and status_of(invalid.value)["reason"] == "Invalid"


def test_a_namespaced_object_in_a_missing_namespace_is_not_found(target):
    with pytest.raises(ApiException) as missing:
        target.rbac.create_namespaced_role_binding(
            "no-such-ns", binding("b", "view", [("User", "a", None)], "no-such-ns")
        )
    assert missing.value.status == 404
    assert 'namespaces "no-such-ns" not found' in status_of(missing.value)["message"]


def test_label_selectors_and_pagination_with_a_stable_snapshot(target, namespace):
    for i in range(7):
        labels = {"app.kubernetes.io/managed-by": "warden"} if i % 2 == 0 else {"team": "x"}
        target.rbac.create_namespaced_role_binding(
            namespace, binding(f"b{i}", "view", [("User", f"u{i}", None)], namespace, labels)
        )

    managed = target.rbac.list_namespaced_role_binding(
        namespace, label_selector="app.kubernetes.io/managed-by=warden"
    )
    assert sorted(b.metadata.name for b in managed.items) == ["b0", "b2", "b4", "b6"]
    assert (
        len(
            target.rbac.list_namespaced_role_binding(
                namespace, label_selector="team in (x,y)"
            ).items
        )
        == 3
    )
    assert (
        len(target.rbac.list_namespaced_role_binding(namespace, label_selector="!team").items) == 4
    )

    first = target.rbac.list_namespaced_role_binding(namespace, limit=3)
    assert len(first.items) == 3 and first.metadata._continue
    target.rbac.delete_namespaced_role_binding("b6", namespace)  # after the snapshot was taken
    names = [b.metadata.name for b in first.items]
    token = first.metadata._continue
    while token:
        page = target.rbac.list_namespaced_role_binding(namespace, limit=3, _continue=token)
        names += [b.metadata.name for b in page.items]
        token = page.metadata._continue
    assert names == [f"b{i}" for i in range(7)]

    # A token that is no continue token at all is a bad request (410 is for an expired one).
    with pytest.raises(ApiException) as malformed:
        target.rbac.list_namespaced_role_binding(namespace, limit=3, _continue="bm90LWEtdG9rZW4=")
    assert malformed.value.status == 400


def test_field_selector_by_name(target, namespace):
    target.rbac.create_namespaced_role_binding(
        namespace, binding("wanted", "view", [("User", "a", None)], namespace)
    )
    target.rbac.create_namespaced_role_binding(
        namespace, binding("other", "view", [("User", "a", None)], namespace)
    )
    found = target.rbac.list_namespaced_role_binding(
        namespace, field_selector="metadata.name=wanted"
    )
    assert [b.metadata.name for b in found.items] == ["wanted"]


def test_dry_run_writes_nothing(target, namespace):
    target.rbac.create_namespaced_role_binding(
        namespace, binding("b", "view", [("User", "a", None)], namespace), dry_run="All"
    )
    assert target.rbac.list_namespaced_role_binding(namespace).items == []


def test_patch_kinds(target, namespace):
    target.rbac.create_namespaced_role_binding(
        namespace, binding("b", "view", [("User", "a", None)], namespace)
    )
    target.rbac.patch_namespaced_role_binding("b", namespace, {"metadata": {"labels": {"x": "1"}}})
    body = [{"op": "replace", "path": "/subjects/0/name", "value": "z"}]
    target.rbac.api_client.set_default_header("Content-Type", "application/json-patch+json")
    try:
        target.rbac.patch_namespaced_role_binding(
            "b", namespace, body, _content_type="application/json-patch+json"
        )
    finally:
        target.rbac.api_client.default_headers.pop("Content-Type", None)
    now = target.rbac.read_namespaced_role_binding("b", namespace)
    assert now.metadata.labels == {"x": "1"} and now.subjects[0].name == "z"


def test_deletecollection_by_label(target, namespace):
    for i in range(3):
        target.rbac.create_namespaced_role_binding(
            namespace,
            binding(f"b{i}", "view", [("User", "a", None)], namespace, {"k": "v" if i else "w"}),
        )
    target.rbac.delete_collection_namespaced_role_binding(namespace, label_selector="k=v")
    assert [b.metadata.name for b in target.rbac.list_namespaced_role_binding(namespace).items] == [
        "b0"
    ]


def test_token_request_bound_to_a_secret_is_revoked_with_it(target, namespace):
    core = target.core
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="bot"))
    )
    secret = core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="bot-gen-1"))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(
                kind="Secret", api_version="v1", name="bot-gen-1", uid=secret.metadata.uid
            ),
        )
    )
    token = core.create_namespaced_service_account_token("bot", namespace, request).status.token

    def review(value):
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=value))
        return client.AuthenticationV1Api(target.api).create_token_review(body).status

    status = review(token)
    assert status.authenticated and status.user.username == f"system:serviceaccount:{namespace}:bot"
    assert f"system:serviceaccounts:{namespace}" in status.user.groups

    core.delete_namespaced_secret("bot-gen-1", namespace)

    assert eventually(lambda: not review(token).authenticated)
    with pytest.raises(ApiException) as refused:
        client.VersionApi(target.as_token(token)).get_code()
    assert refused.value.status == 401


def test_rbac_evaluation_follows_the_documented_rules(target, namespace):
    rbac, core = target.rbac, target.core
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="narrow"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""],
                    resources=["configmaps"],
                    resource_names=["only-this"],
                    verbs=["get"],
                ),
                client.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"]),
                client.V1PolicyRule(api_groups=["apps"], resources=["*"], verbs=["list"]),
            ],
        ),
    )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role_binding(
        namespace,
        binding(
            "narrow",
            "narrow",
            [("Group", f"system:serviceaccounts:{namespace}", None)],
            namespace,
            kind="Role",
        ),
    )

    def can(verb, resource, name="", group="", sub="", ns=namespace):
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{namespace}:reader",
                groups=[
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb,
                    resource=resource,
                    name=name,
                    group=group,
                    subresource=sub,
                    namespace=ns,
                ),
            )
        )
        return (
            client.AuthorizationV1Api(target.api)
            .create_subject_access_review(review)
            .status.allowed
        )

    assert can("get", "configmaps", "only-this")
    assert not can("get", "configmaps", "another")
    assert can("get", "pods", "p", sub="log")
    assert not can("get", "pods", "p")
    assert can("list", "deployments", group="apps")
    assert not can("list", "deployments", group="apps", ns="default")


def test_a_token_with_too_little_access_gets_the_real_forbidden_message(target, namespace):
    token = target.token_of("alice")
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(target.as_token(token)).list_namespaced_pod(namespace)
    assert forbidden.value.status == 403
    assert status_of(forbidden.value)["message"] == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
        f'in the namespace "{namespace}"'
    )


def test_binding_a_role_one_does_not_hold_needs_bind(target, namespace):
    token = target.token_of("dave")
    target.rbac.create_namespaced_role_binding(
        namespace, binding("deputy-admin", "admin", [("User", "dave", None)], namespace)
    )
    deputy = client.RbacAuthorizationV1Api(target.as_token(token))
    # admin may grant view and edit in its namespace (it holds them), not cluster-admin
    deputy.create_namespaced_role_binding(
        namespace, binding("ok", "view", [("User", "x", None)], namespace)
    )
    with pytest.raises(ApiException) as escalation:
        deputy.create_namespaced_role_binding(
            namespace, binding("no", "cluster-admin", [("User", "x", None)], namespace)
        )
    assert escalation.value.status == 403
    assert (
        "attempting to grant RBAC permissions not currently held"
        in status_of(escalation.value)["message"]
    )


def test_self_subject_access_and_rules_reviews(target):
    api = client.AuthorizationV1Api(target.api)
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb="create", resource="clusterrolebindings", group=RBAC
            )
        )
    )
    assert api.create_self_subject_access_review(review).status.allowed
    rules = api.create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(
            spec=client.V1SelfSubjectRulesReviewSpec(namespace="default")
        )
    )
    assert rules.status.resource_rules


def raw_get(sim, path):
    """One plain HTTPS GET, without the official client's own retries."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cadata=sim.ca_cert_pem.decode())
    request = urllib.request.Request(
        sim.server_url + path, headers={"Authorization": f"Bearer {sim.admin_token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_faults_and_counters(kubesim_target):
    target = kubesim_target
    sim = target.sim
    sim.reset_counters()
    target.rbac.list_cluster_role_binding()
    assert sim.counters[("list", "clusterrolebindings")] == 1

    sim.faults.throttle(n=1, retry_after=2)
    status, headers = raw_get(sim, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")
    assert status == 429 and headers["Retry-After"] == "2"
    assert raw_get(sim, "/version")[0] == 200

    sim.faults.error_rate, sim.faults.status = 1.0, 503
    assert raw_get(sim, "/version")[0] == 503
    sim.faults.clear()

    sim.faults.unreachable = True
    with pytest.raises(Exception) as unreachable:
        raw_get(sim, "/version")
    assert not isinstance(unreachable.value, ApiException)
    sim.faults.clear()
    assert client.VersionApi(target.api).get_code().major == "1"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_get_apply_dry_run_and_can_i(target, namespace, tmp_path):
    def kubectl(*args):
        return subprocess.run(
            ["kubectl", "--kubeconfig", target.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = kubectl("get", "clusterroles", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert "clusterrole.rbac.authorization.k8s.io/view" in listed.stdout

    manifest = tmp_path / "rb.yaml"
    manifest.write_text(f"""apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: from-kubectl, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]
""")
    # kubesim serves no OpenAPI document, so client-side validation is off
    applied = kubectl("apply", "--validate=false", "--dry-run=server", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert target.rbac.list_namespaced_role_binding(namespace).items == []

    target.rbac.create_namespaced_role_binding(
        namespace, binding("alice-view", "view", [("User", "alice", None)], namespace)
    )
    yes = kubectl("auth", "can-i", "list", "pods", "-n", namespace, "--as", "alice")
    no = kubectl("auth", "can-i", "delete", "pods", "-n", namespace, "--as", "alice")
    assert yes.stdout.strip() == "yes", yes.stderr
    assert no.stdout.strip() == "no"


def test_the_token_controller_fills_legacy_service_account_token_secrets(target, namespace):
    core = target.core
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="legacy"))
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="legacy-token", annotations={"kubernetes.io/service-account.name": "legacy"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    import base64
    import time

    deadline = time.monotonic() + 10
    secret = core.read_namespaced_secret("legacy-token", namespace)
    while not (secret.data or {}).get("token") and time.monotonic() < deadline:
        time.sleep(0.2)
        secret = core.read_namespaced_secret("legacy-token", namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    review = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    status = client.AuthenticationV1Api(target.api).create_token_review(review).status
    assert (
        status.authenticated and status.user.username == f"system:serviceaccount:{namespace}:legacy"
    )


def test_deleting_a_namespace_removes_what_it_holds(target, namespace):
    target.rbac.create_namespaced_role_binding(
        namespace, binding("b", "view", [("User", "a", None)], namespace)
    )
    target.core.delete_namespace(namespace)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            target.core.read_namespace(namespace)
        except ApiException as gone:
            assert gone.status == 404
            break
        time.sleep(0.5)
    with pytest.raises(ApiException) as missing:
        target.rbac.read_namespaced_role_binding("b", namespace)
    assert missing.value.status == 404
