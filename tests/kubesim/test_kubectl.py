"""The real kubectl against kubesim over HTTPS, as a user runs it: what it prints, its exit code,
and the object read back with the official Python client. The same tests run against the real
kube-apiserver through the `kubectl_target` fixture (tests/fixtures/kubectl.py)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time

import pytest
import yaml
from kubernetes import client

from tests.fixtures.kubectl import KubectlTarget, kubectl_binary


@pytest.fixture
def namespace(kubectl_target: KubectlTarget) -> str:
    """A fresh namespace, made with kubectl (a protobuf body)."""
    name = f"kubectl-{secrets.token_hex(3)}"
    made = kubectl_target.run("create", "namespace", name)
    assert made.returncode == 0, made.stderr
    return name


def ok(result):
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def rolebinding_yaml(namespace: str, name: str, team: str, group: str = "devs") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": team}},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }
    )


def test_version_shows_the_client_and_the_server(kubectl_target):
    out = json.loads(ok(kubectl_target.run("version", "-o", "json")))

    assert out["clientVersion"]["major"] == "1"
    assert out["serverVersion"]["major"] == "1"
    assert re.match(r"^v1\.\d+\.\d+", out["serverVersion"]["gitVersion"])


def test_api_resources_lists_the_kinds_with_their_group_and_scope(kubectl_target):
    out = ok(kubectl_target.run("api-resources"))

    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert rows["serviceaccounts"] == ["serviceaccounts", "sa", "v1", "true", "ServiceAccount"]
    assert rows["rolebindings"] == [
        "rolebindings",
        "rbac.authorization.k8s.io/v1",
        "true",
        "RoleBinding",
    ]
    assert rows["clusterrolebindings"][1:] == [
        "rbac.authorization.k8s.io/v1",
        "false",
        "ClusterRoleBinding",
    ]
    assert "selfsubjectaccessreviews" in rows


def test_create_sends_protobuf_and_makes_each_kind(kubectl_target):
    name = f"team-{secrets.token_hex(3)}"
    v8 = kubectl_target.run("create", "namespace", name, "-v=8")
    assert v8.returncode == 0, v8.stderr
    assert "Content-Type: application/vnd.kubernetes.protobuf" in v8.stderr  # what is tested

    created = [
        kubectl_target.run("create", "serviceaccount", "deployer", "-n", name),
        kubectl_target.run(
            "create",
            "rolebinding",
            "deployers",
            "--clusterrole=edit",
            "--serviceaccount",
            f"{name}:deployer",
            "--user=alice",
            "--group=devs",
            "-n",
            name,
        ),
        kubectl_target.run(
            "create", "clusterrolebinding", f"{name}-viewers", "--clusterrole=view", "--group=sre"
        ),
        kubectl_target.run(
            "create", "role", "reader", "--verb=get,list", "--resource=pods", "-n", name
        ),
        kubectl_target.run(
            "create", "clusterrole", f"{name}-reader", "--verb=get", "--resource=namespaces"
        ),
        kubectl_target.run(
            "create", "secret", "generic", "creds", "--from-literal=key=s3cr3t", "-n", name
        ),
        kubectl_target.run(
            "create", "configmap", "settings", "--from-literal=mode=dry", "-n", name
        ),
    ]

    assert [ok(c).strip() for c in created] == [
        "serviceaccount/deployer created",
        "rolebinding.rbac.authorization.k8s.io/deployers created",
        f"clusterrolebinding.rbac.authorization.k8s.io/{name}-viewers created",
        "role.rbac.authorization.k8s.io/reader created",
        f"clusterrole.rbac.authorization.k8s.io/{name}-reader created",
        "secret/creds created",
        "configmap/settings created",
    ]
    api = kubectl_target.api()
    rbac = client.RbacAuthorizationV1Api(api)
    binding = rbac.read_namespaced_role_binding("deployers", name)
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "edit")
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("User", "alice", None),
        ("Group", "devs", None),
        ("ServiceAccount", "deployer", name),
    ]
    cluster_binding = rbac.read_cluster_role_binding(f"{name}-viewers")
    assert [(s.kind, s.name) for s in cluster_binding.subjects] == [("Group", "sre")]
    account = client.CoreV1Api(api).read_namespaced_service_account("deployer", name)
    assert account.metadata.uid
    assert client.CoreV1Api(api).read_namespace(name).status.phase == "Active"
    role = rbac.read_namespaced_role("reader", name)
    assert [(r.verbs, r.resources, r.api_groups) for r in role.rules] == [
        (["get", "list"], ["pods"], [""])
    ]
    cluster_role = rbac.read_cluster_role(f"{name}-reader")
    assert [(r.verbs, r.resources) for r in cluster_role.rules] == [(["get"], ["namespaces"])]
    secret = client.CoreV1Api(api).read_namespaced_secret("creds", name)
    assert (secret.type, secret.data) == ("Opaque", {"key": "czNjcjN0"})
    config_map = client.CoreV1Api(api).read_namespaced_config_map("settings", name)
    assert config_map.data == {"mode": "dry"}


def test_creating_what_exists_is_refused_with_the_servers_reason(kubectl_target, namespace):
    again = kubectl_target.run("create", "namespace", namespace)

    assert again.returncode == 1
    assert f'Error from server (AlreadyExists): namespaces "{namespace}" already exists' in (
        again.stderr
    )


def test_get_prints_the_object_as_yaml_and_json(kubectl_target, namespace):
    ok(
        kubectl_target.run(
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--group=devs",
            "-n",
            namespace,
        )
    )

    as_yaml = yaml.safe_load(
        ok(kubectl_target.run("get", "rolebinding", "viewers", "-n", namespace, "-o", "yaml"))
    )
    as_json = json.loads(
        ok(kubectl_target.run("get", "rolebinding", "viewers", "-n", namespace, "-o", "json"))
    )

    assert as_yaml == as_json
    assert as_json["kind"] == "RoleBinding"
    assert as_json["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert as_json["metadata"]["namespace"] == namespace
    assert as_json["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "view",
    }
    assert as_json["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}
    ]
    assert "managedFields" not in as_json["metadata"]  # kubectl hides them unless asked
    shown = json.loads(
        ok(
            kubectl_target.run(
                "get",
                "rolebinding",
                "viewers",
                "-n",
                namespace,
                "-o",
                "json",
                "--show-managed-fields",
            )
        )
    )
    assert [(m["manager"], m["operation"]) for m in shown["metadata"]["managedFields"]] == [
        ("kubectl-create", "Update")
    ]


def test_get_prints_the_servers_columns(kubectl_target, namespace):
    ok(
        kubectl_target.run(
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--group=devs",
            "--user=alice",
            "-n",
            namespace,
        )
    )

    namespaces = ok(kubectl_target.run("get", "namespace", namespace)).splitlines()
    bindings = ok(kubectl_target.run("get", "rolebindings", "-n", namespace, "-o", "wide"))

    assert namespaces[0].split() == ["NAME", "STATUS", "AGE"]
    assert namespaces[1].split()[:2] == [namespace, "Active"]
    header, row = bindings.splitlines()
    assert header.split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert row.split()[:2] == ["viewers", "ClusterRole/view"]
    assert row.split()[3:] == ["alice", "devs"]


def test_get_in_chunks_pages_through_every_object(kubectl_target, namespace):
    for i in range(5):
        ok(kubectl_target.run("create", "serviceaccount", f"robot-{i}", "-n", namespace))
        ok(
            kubectl_target.run(
                "label", "serviceaccount", f"robot-{i}", "fleet=robots", "-n", namespace
            )
        )

    listed = kubectl_target.run(
        "get",
        "serviceaccounts",
        "-n",
        namespace,
        "-l",
        "fleet=robots",
        "--chunk-size=2",
        "-o",
        "name",
        "-v=6",
    )

    assert ok(listed).split() == [f"serviceaccount/robot-{i}" for i in range(5)]
    pages = re.findall(
        r'"Response" verb="GET" url="(\S+/serviceaccounts\?[^"]*limit=2[^"]*)" status="200 OK"',
        listed.stderr,
    )
    assert len(pages) == 3, listed.stderr
    assert sum("continue=" in page for page in pages) == 2


def test_label_selectors_choose_what_get_lists(kubectl_target, namespace):
    for name, team in (("alpha", "a"), ("beta", "b"), ("gamma", "c")):
        ok(kubectl_target.run("apply", "-f", "-", stdin=rolebinding_yaml(namespace, name, team)))

    def names(selector: str) -> list[str]:
        out = ok(
            kubectl_target.run("get", "rolebindings", "-n", namespace, "-l", selector, "-o", "name")
        )
        return [line.rsplit("/", 1)[1] for line in out.split()]

    assert names("team=a") == ["alpha"]
    assert names("team!=a") == ["beta", "gamma"]
    assert names("team in (a,c)") == ["alpha", "gamma"]
    assert names("team notin (a,c)") == ["beta"]
    assert names("team") == ["alpha", "beta", "gamma"]
    assert names("!team") == []
    bad = kubectl_target.run("get", "rolebindings", "-n", namespace, "-l", "team in (a")
    assert bad.returncode == 1


def test_auth_can_i_answers_for_whom_kubectl_impersonates(kubectl_target, namespace):
    ok(
        kubectl_target.run(
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--group=devs",
            "-n",
            namespace,
        )
    )

    as_member = kubectl_target.run(
        "auth", "can-i", "list", "pods", "-n", namespace, "--as", "alice", "--as-group", "devs"
    )
    as_outsider = kubectl_target.run(
        "auth", "can-i", "list", "pods", "-n", namespace, "--as", "mallory"
    )
    too_much = kubectl_target.run(
        "auth", "can-i", "delete", "pods", "-n", namespace, "--as", "alice", "--as-group", "devs"
    )
    elsewhere = kubectl_target.run(
        "auth", "can-i", "list", "pods", "-n", "default", "--as", "alice", "--as-group", "devs"
    )
    admin = kubectl_target.run("auth", "can-i", "*", "*")

    assert (as_member.returncode, as_member.stdout.strip()) == (0, "yes")
    assert (as_outsider.returncode, as_outsider.stdout.strip()) == (1, "no")
    assert (too_much.returncode, too_much.stdout.strip()) == (1, "no")
    assert (elsewhere.returncode, elsewhere.stdout.strip()) == (1, "no")
    assert (admin.returncode, admin.stdout.strip()) == (0, "yes")


def test_create_token_issues_a_token_the_server_accepts(kubectl_target, namespace):
    ok(kubectl_target.run("create", "serviceaccount", "deployer", "-n", namespace))

    token = ok(
        kubectl_target.run("create", "token", "deployer", "-n", namespace, "--duration=10m")
    ).strip()

    review = client.AuthenticationV1Api(kubectl_target.api()).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:deployer"
    whoami = json.loads(ok(kubectl_target.run("auth", "whoami", "--token", token, "-o", "json")))
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:deployer"
    assert f"system:serviceaccounts:{namespace}" in whoami["status"]["userInfo"]["groups"]
    missing = kubectl_target.run("create", "token", "nobody", "-n", namespace)
    assert missing.returncode == 1
    assert 'serviceaccounts "nobody" not found' in missing.stderr


def test_apply_creates_then_leaves_alone_then_configures(kubectl_target, namespace):
    first = kubectl_target.run("apply", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a"))
    again = kubectl_target.run("apply", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a"))
    changed = kubectl_target.run(
        "apply", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "b", "ops")
    )

    assert ok(first).strip() == "rolebinding.rbac.authorization.k8s.io/devs created"
    assert ok(again).strip() == "rolebinding.rbac.authorization.k8s.io/devs unchanged"
    assert ok(changed).strip() == "rolebinding.rbac.authorization.k8s.io/devs configured"
    assert "warning" not in first.stderr + again.stderr + changed.stderr  # OpenAPI was read
    binding = client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
        "devs", namespace
    )
    assert binding.metadata.labels == {"team": "b"}
    assert [s.name for s in binding.subjects] == ["ops"]
    applied = json.loads(
        binding.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert applied["metadata"]["labels"] == {"team": "b"}


def test_apply_refuses_unknown_fields_or_drops_them_with_a_warning(kubectl_target, namespace):
    doc = yaml.safe_load(rolebinding_yaml(namespace, "devs", "a"))
    doc["subjects"][0]["team"] = "x"
    doc["spec"] = {}

    strict = kubectl_target.run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    warned = kubectl_target.run("apply", "--validate=warn", "-f", "-", stdin=yaml.safe_dump(doc))

    assert strict.returncode == 1
    assert "strict decoding error" in strict.stderr
    assert 'unknown field "spec"' in strict.stderr
    assert 'unknown field "subjects[0].team"' in strict.stderr
    assert ok(warned).strip() == "rolebinding.rbac.authorization.k8s.io/devs created"
    assert 'Warning: unknown field "spec"' in warned.stderr
    stored = json.loads(
        ok(kubectl_target.run("get", "rolebinding", "devs", "-n", namespace, "-o", "json"))
    )
    assert "spec" not in stored
    assert stored["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}
    ]


def test_apply_with_a_server_dry_run_changes_nothing(kubectl_target, namespace):
    dry = kubectl_target.run(
        "apply", "--dry-run=server", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a")
    )

    assert ok(dry).strip() == "rolebinding.rbac.authorization.k8s.io/devs created (server dry run)"
    gone = kubectl_target.run("get", "rolebinding", "devs", "-n", namespace)
    assert gone.returncode == 1
    assert "(NotFound)" in gone.stderr


def test_server_side_apply_owns_its_fields_and_reports_conflicts(kubectl_target, namespace):
    first = kubectl_target.run(
        "apply", "--server-side", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a")
    )
    assert ok(first).strip() == "rolebinding.rbac.authorization.k8s.io/devs serverside-applied"
    ok(kubectl_target.run("label", "rolebinding", "devs", "team=z", "--overwrite", "-n", namespace))

    conflict = kubectl_target.run(
        "apply", "--server-side", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a")
    )
    forced = kubectl_target.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=rolebinding_yaml(namespace, "devs", "a"),
    )

    assert conflict.returncode == 1
    assert 'conflict with "kubectl-label"' in conflict.stderr
    assert ".metadata.labels.team" in conflict.stderr
    assert ok(forced).strip() == "rolebinding.rbac.authorization.k8s.io/devs serverside-applied"
    binding = client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
        "devs", namespace
    )
    assert binding.metadata.labels["team"] == "a"
    managers = {(m.manager, m.operation) for m in binding.metadata.managed_fields}
    assert ("kubectl", "Apply") in managers


def test_server_side_apply_drops_fields_the_manager_no_longer_applies(kubectl_target, namespace):
    doc = yaml.safe_load(rolebinding_yaml(namespace, "devs", "a"))
    doc["metadata"]["labels"]["tier"] = "gold"
    ok(kubectl_target.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(doc)))
    del doc["metadata"]["labels"]["tier"]

    ok(kubectl_target.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(doc)))

    binding = client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
        "devs", namespace
    )
    assert binding.metadata.labels == {"team": "a"}


def test_diff_shows_what_apply_would_change_and_changes_nothing(kubectl_target, namespace):
    ok(kubectl_target.run("apply", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a")))

    same = kubectl_target.run("diff", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "a"))
    changed = kubectl_target.run("diff", "-f", "-", stdin=rolebinding_yaml(namespace, "devs", "b"))

    assert (same.returncode, same.stdout) == (0, "")
    assert changed.returncode == 1, changed.stderr  # 1: differences found; >1: kubectl failed
    assert "-    team: a" in changed.stdout and "+    team: b" in changed.stdout
    binding = client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
        "devs", namespace
    )
    assert binding.metadata.labels == {"team": "a"}


def test_patch_in_each_of_kubectls_patch_types(kubectl_target, namespace):
    ok(
        kubectl_target.run(
            "create", "rolebinding", "devs", "--clusterrole=view", "--group=devs", "-n", namespace
        )
    )
    bob = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}
    add_bob = json.dumps([{"op": "add", "path": "/subjects/-", "value": bob}])

    strategic = kubectl_target.run(
        "patch",
        "rolebinding",
        "devs",
        "-n",
        namespace,
        "-p",
        '{"metadata": {"labels": {"team": "a"}}}',
    )
    merge = kubectl_target.run(
        "patch",
        "rolebinding",
        "devs",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata": {"annotations": {"owner": "sre"}}}',
    )
    json_patch = kubectl_target.run(
        "patch", "rolebinding", "devs", "-n", namespace, "--type=json", "-p", add_bob
    )
    no_op = kubectl_target.run(
        "patch",
        "rolebinding",
        "devs",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata": {"annotations": {"owner": "sre"}}}',
    )
    immutable = kubectl_target.run(
        "patch",
        "rolebinding",
        "devs",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"roleRef": {"name": "edit"}}',
    )

    assert [ok(r).strip() for r in (strategic, merge, json_patch, no_op)] == [
        "rolebinding.rbac.authorization.k8s.io/devs patched",
        "rolebinding.rbac.authorization.k8s.io/devs patched",
        "rolebinding.rbac.authorization.k8s.io/devs patched",
        "rolebinding.rbac.authorization.k8s.io/devs patched (no change)",
    ]
    assert immutable.returncode == 1
    assert 'The RoleBinding "devs" is invalid: roleRef: Invalid value' in immutable.stderr
    assert "field is immutable" in immutable.stderr
    binding = client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
        "devs", namespace
    )
    assert binding.metadata.labels == {"team": "a"}
    assert binding.metadata.annotations == {"owner": "sre"}
    assert [s.name for s in binding.subjects] == ["devs", "bob"]
    assert binding.role_ref.name == "view"


def test_delete_removes_the_object_and_a_second_delete_is_not_found(kubectl_target, namespace):
    ok(
        kubectl_target.run(
            "create", "rolebinding", "devs", "--clusterrole=view", "--group=devs", "-n", namespace
        )
    )

    deleted = kubectl_target.run("delete", "rolebinding", "devs", "-n", namespace)
    again = kubectl_target.run("delete", "rolebinding", "devs", "-n", namespace)

    assert ok(deleted).startswith('rolebinding.rbac.authorization.k8s.io "devs" deleted')
    assert again.returncode == 1
    assert (
        'Error from server (NotFound): rolebindings.rbac.authorization.k8s.io "devs" not found'
        in again.stderr
    )
    with pytest.raises(client.ApiException) as gone:
        client.RbacAuthorizationV1Api(kubectl_target.api()).read_namespaced_role_binding(
            "devs", namespace
        )
    assert gone.value.status == 404


def test_delete_of_a_file_removes_a_namespace_and_what_it_holds(kubectl_target):
    name = f"gone-{secrets.token_hex(3)}"
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    manifest += "---\n" + rolebinding_yaml(name, "devs", "a")
    ok(kubectl_target.run("apply", "-f", "-", stdin=manifest))

    deleted = kubectl_target.run("delete", "-f", "-", stdin=manifest, timeout=120)

    assert ok(deleted).splitlines() == [
        f'namespace "{name}" deleted',
        f'rolebinding.rbac.authorization.k8s.io "devs" deleted from {name} namespace',
    ]
    gone = kubectl_target.run("get", "namespace", name)
    assert gone.returncode == 1 and "(NotFound)" in gone.stderr


def test_the_default_namespaces_cannot_be_deleted(kubectl_target):
    refused = kubectl_target.run("delete", "namespace", "default")

    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'Error from server (Forbidden): namespaces "default" is forbidden: '
        "this namespace may not be deleted"
    )


def test_a_user_without_rights_is_forbidden_with_the_servers_message(kubectl_target, namespace):
    reading = kubectl_target.run("get", "secrets", "-n", namespace, "--as", "mallory")
    binding = kubectl_target.run(
        "create",
        "rolebinding",
        "mine",
        "--clusterrole=admin",
        "--user=mallory",
        "-n",
        namespace,
        "--as",
        "mallory",
    )

    assert reading.returncode == 1
    assert reading.stderr.strip() == (
        'Error from server (Forbidden): secrets is forbidden: User "mallory" cannot list '
        f'resource "secrets" in API group "" in the namespace "{namespace}"'
    )
    assert binding.returncode == 1
    assert (
        'rolebindings.rbac.authorization.k8s.io is forbidden: User "mallory" cannot create '
        'resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace'
    ) in binding.stderr


def test_get_watch_prints_each_change_as_it_happens(kubectl_target, namespace):
    watcher = subprocess.Popen(
        [
            kubectl_binary() or "kubectl",
            "--kubeconfig",
            str(kubectl_target.kubeconfig),
            "--context",
            kubectl_target.context,
            "get",
            "serviceaccounts",
            "-n",
            namespace,
            "-l",
            "app=late",
            "--watch",
            "--output-watch-events",
            "--no-headers",
            "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,TIER:.object.metadata.labels.tier",
            "--request-timeout=30s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # the watch is open
        manifest = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "late"}}
        manifest["metadata"]["labels"] = {"app": "late"}
        ok(kubectl_target.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest)))
        ok(kubectl_target.run("label", "sa", "late", "-n", namespace, "tier=gold"))
        ok(kubectl_target.run("delete", "sa", "late", "-n", namespace))
        lines = [watcher.stdout.readline().strip() for _ in range(3)] if watcher.stdout else []
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)

    assert [line.split() for line in lines] == [
        ["ADDED", "late", "<none>"],
        ["MODIFIED", "late", "gold"],
        ["DELETED", "late", "gold"],
    ], watcher.stderr.read() if watcher.stderr else ""
