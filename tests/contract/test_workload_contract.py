"""The built-in kinds Warden's own deployment uses, as kube-apiserver defaults and validates them.

Run unchanged against kubesim and (WARDEN_E2E_KUBECONFIG) a real cluster, with the official
client: what a server-side dry-run of deploy/kubernetes/ relies on.
"""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes import client
from kubernetes.client import ApiException

LABELS = {"app.kubernetes.io/name": "demo", "app.kubernetes.io/component": "web"}


def deployment(name: str = "demo", **spec_changes) -> dict:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example.com/demo:1",
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    body["spec"].update(spec_changes)
    return body


def job(name: str = "migrate", restart_policy: str = "Never") -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": restart_policy,
                    "containers": [{"name": "migrate", "image": "demo:1", "command": ["true"]}],
                }
            },
        },
    }


def raw_create(target, path: str, body: dict, dry_run: bool = True) -> None:
    """POST a body as it is (the typed client refuses some bad bodies before sending them)."""
    api = target.api
    _m, url, headers, data, _p = api.param_serialize(
        method="POST",
        resource_path=path,
        query_params=[("dryRun", "All")] if dry_run else [],
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api("POST", url, header_params=headers, body=data)
    response.read()
    if response.status >= 400:
        raise ApiException(status=response.status, reason=response.reason, http_resp=response)


def invalid(exc: pytest.ExceptionInfo[ApiException]) -> str:
    assert exc.value.status == 422, exc.value.body
    return json.loads(exc.value.body)["message"]


@pytest.fixture
def apps(target) -> client.AppsV1Api:
    return client.AppsV1Api(target.api)


def test_a_deployment_is_created_with_defaults_and_a_dry_run_keeps_nothing(target, namespace, apps):
    made = apps.create_namespaced_deployment(namespace, deployment(), dry_run="All")
    assert made.metadata.name == "demo"
    assert made.spec.strategy.type == "RollingUpdate"
    assert made.spec.template.spec.restart_policy == "Always"
    assert apps.list_namespaced_deployment(namespace).items == []

    apps.create_namespaced_deployment(namespace, deployment())
    assert apps.read_namespaced_deployment("demo", namespace).metadata.generation == 1


def test_a_deployment_whose_selector_misses_its_template_is_refused(target, namespace, apps):
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": "other"}
    with pytest.raises(ApiException) as refused:
        apps.create_namespaced_deployment(namespace, body, dry_run="All")
    assert "`selector` does not match template `labels`" in invalid(refused)

    body = deployment()
    del body["spec"]["selector"]
    with pytest.raises(ApiException) as missing:
        raw_create(target, f"/apis/apps/v1/namespaces/{namespace}/deployments", body)
    assert "spec.selector: Required value" in invalid(missing)


def test_a_deployments_selector_is_immutable(target, namespace, apps):
    apps.create_namespaced_deployment(namespace, deployment())
    current = apps.read_namespaced_deployment("demo", namespace)
    changed = client.ApiClient().sanitize_for_serialization(current)
    changed["spec"]["selector"]["matchLabels"]["tier"] = "front"
    changed["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
    with pytest.raises(ApiException) as refused:
        apps.replace_namespaced_deployment("demo", namespace, changed)
    message = invalid(refused)
    assert "spec.selector" in message and "field is immutable" in message


def test_a_container_mounting_a_volume_that_is_not_declared_is_refused(target, namespace, apps):
    body = deployment()
    body["spec"]["template"]["spec"]["volumes"] = []
    with pytest.raises(ApiException) as refused:
        apps.create_namespaced_deployment(namespace, body, dry_run="All")
    assert 'volumeMounts[0].name: Not found: "tmp"' in invalid(refused)


def test_recreate_deployments_take_no_rolling_update_and_requests_stay_under_limits(
    target, namespace, apps
):
    body = deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
    with pytest.raises(ApiException) as rolling:
        apps.create_namespaced_deployment(namespace, body, dry_run="All")
    assert "spec.strategy.rollingUpdate: Forbidden" in invalid(rolling)

    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1Gi"
    with pytest.raises(ApiException) as over:
        apps.create_namespaced_deployment(namespace, body, dry_run="All")
    assert "must be less than or equal to memory limit" in invalid(over)


def test_a_job_restarts_never_or_on_failure_and_its_template_is_immutable(target, namespace):
    batch = client.BatchV1Api(target.api)
    with pytest.raises(ApiException) as always:
        batch.create_namespaced_job(namespace, job(restart_policy="Always"), dry_run="All")
    assert (
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
        in invalid(always)
    )

    made = batch.create_namespaced_job(namespace, job())
    # the job controller's selector: the Job's own uid, also on the template's labels
    uid = made.metadata.uid
    assert made.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert made.spec.template.metadata.labels["batch.kubernetes.io/controller-uid"] == uid

    changed = client.ApiClient().sanitize_for_serialization(made)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:2"
    with pytest.raises(ApiException) as template:
        batch.replace_namespaced_job("migrate", namespace, changed)
    message = invalid(template)
    assert "spec.template" in message and "field is immutable" in message


def test_a_service_gets_a_cluster_ip_that_cannot_change(target, namespace):
    core = target.core
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": dict(LABELS), "ports": [{"name": "http", "port": 80}]},
    }
    made = core.create_namespaced_service(namespace, body)
    assert made.spec.cluster_ip and made.spec.type == "ClusterIP"
    assert made.spec.ports[0].target_port == 80 and made.spec.ports[0].protocol == "TCP"

    changed = client.ApiClient().sanitize_for_serialization(made)
    changed["spec"]["clusterIP"] = changed["spec"]["clusterIPs"][0] = "10.96.250.250"
    with pytest.raises(ApiException) as moved:
        core.replace_namespaced_service("web", namespace, changed)
    assert moved.value.status == 422

    no_ports = copy.deepcopy(body)
    no_ports["metadata"]["name"] = "empty"
    no_ports["spec"]["ports"] = []
    with pytest.raises(ApiException) as empty:
        core.create_namespaced_service(namespace, no_ports, dry_run="All")
    assert "spec.ports: Required value" in invalid(empty)


def test_a_disruption_budget_sets_min_available_or_max_unavailable_not_both(target, namespace):
    policy = client.PolicyV1Api(target.api)
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": LABELS}},
    }
    with pytest.raises(ApiException) as both:
        policy.create_namespaced_pod_disruption_budget(namespace, body, dry_run="All")
    assert "minAvailable and maxUnavailable cannot be both set" in invalid(both)
    del body["spec"]["maxUnavailable"]
    assert policy.create_namespaced_pod_disruption_budget(namespace, body).spec.min_available == 1


def test_a_network_policy_names_ingress_or_egress(target, namespace):
    networking = client.NetworkingV1Api(target.api)
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web"},
        "spec": {
            "podSelector": {"matchLabels": LABELS},
            "policyTypes": ["Inbound"],
            "ingress": [{"ports": [{"port": 8000}]}],
        },
    }
    with pytest.raises(ApiException) as wrong:
        networking.create_namespaced_network_policy(namespace, body, dry_run="All")
    assert 'Unsupported value: "Inbound"' in invalid(wrong)
    body["spec"]["policyTypes"] = ["Ingress"]
    made = networking.create_namespaced_network_policy(namespace, body)
    assert made.spec.ingress[0].ports[0].protocol == "TCP"


def test_secret_string_data_is_stored_as_data_and_bad_keys_are_refused(target, namespace):
    core = target.core
    made = core.create_namespaced_secret(
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
    )
    assert made.data == {"k": "dg=="} and made.type == "Opaque"

    with pytest.raises(ApiException) as bad_key:
        core.create_namespaced_config_map(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"a b": "x"},
            },
            dry_run="All",
        )
    assert "a valid config key must consist of alphanumeric characters" in invalid(bad_key)

    changed = client.ApiClient().sanitize_for_serialization(made)
    changed["type"] = "kubernetes.io/tls"
    with pytest.raises(ApiException) as retyped:
        core.replace_namespaced_secret("s", namespace, changed)
    assert "field is immutable" in invalid(retyped)
