"""deploy/kubernetes/: what `kubectl apply -k` sends, accepted by a server-side dry-run, and the
production promises it keeps (non-root, read-only, probes, one beat, secrets from files)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.conftest import write_single_kubeconfig
from tests.fixtures.kubectl import kubectl_binary

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
KUBECTL = kubectl_binary()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def rendered() -> list[dict[str, Any]]:
    """The documents `kubectl apply -k deploy/kubernetes` applies (kustomize is in kubectl)."""
    if KUBECTL is None:
        return rendered_without_kubectl()
    out = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE_DIR)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


CLUSTER_SCOPED = {"Namespace"}


def rendered_without_kubectl() -> list[dict[str, Any]]:
    """What kustomize makes of this kustomization.yaml (namespace, labels, image), by hand."""
    kustomization = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    image = kustomization["images"][0]
    labels = kustomization["labels"][0]["pairs"]
    docs = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUSTOMIZE_DIR / resource).read_text()):
            if not doc:
                continue
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            doc["metadata"].setdefault("labels", {}).update(labels)
            template = (doc.get("spec") or {}).get("template")
            if template:  # (labels without includeTemplates leave pod templates alone)
                for container in template["spec"]["containers"]:
                    if container["image"] == image["name"]:
                        container["image"] = f"{image['newName']}:{image['newTag']}"
            docs.append(doc)
    return docs


def collection_path(doc: dict[str, Any]) -> str:
    """The API path a document is created at (the kinds the manifests use)."""
    plural = {
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "ConfigMap": "configmaps",
        "Secret": "secrets",
        "Service": "services",
        "Deployment": "deployments",
        "Job": "jobs",
        "PodDisruptionBudget": "poddisruptionbudgets",
        "NetworkPolicy": "networkpolicies",
    }[doc["kind"]]
    version = doc["apiVersion"]
    prefix = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    if doc["kind"] in CLUSTER_SCOPED:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{doc['metadata']['namespace']}/{plural}"


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    workloads = {**by_kind(docs, "Deployment"), **by_kind(docs, "Job")}
    return {name: d["spec"]["template"]["spec"] for name, d in workloads.items()}


@pytest.fixture
def kubectl(tmp_path, kube_cluster):
    """kubectl against a fresh kubesim cluster, as an operator would run it."""
    sim = kube_cluster()
    config = tmp_path / "kubeconfig"
    cache = tmp_path / "kubectl-cache"  # discovery and OpenAPI of this cluster alone
    write_single_kubeconfig(config, sim, "")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL or "kubectl", "--kubeconfig", str(config), "--cache-dir", str(cache), *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )

    run.sim = sim  # type: ignore[attr-defined]
    return run


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


# kubectl validates on the server (its OpenAPI says the server takes fieldValidation).
DRY_RUN = ("apply", "--dry-run=server", "-f", "-")


@needs_kubectl
def test_every_object_passes_a_server_side_dry_run_and_nothing_is_created(kubectl):
    docs = rendered()
    namespace = by_kind(docs, "Namespace")["warden"]
    created = kubectl("apply", "-f", "-", stdin=as_yaml([namespace]))
    assert created.returncode == 0, created.stderr
    example = yaml.safe_load((KUSTOMIZE_DIR / "secrets.example.yaml").read_text())
    example["metadata"]["namespace"] = "warden"
    namespaced = [d for d in docs if d["kind"] != "Namespace"] + [example]

    applied = kubectl(*DRY_RUN, stdin=as_yaml(namespaced))

    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert len(lines) == len(namespaced)
    assert all(line.endswith("created (server dry run)") for line in lines), applied.stdout
    for expected in (
        "deployment.apps/warden-web",
        "deployment.apps/warden-worker",
        "deployment.apps/warden-beat",
        "job.batch/warden-migrate",
        "service/warden-web",
        "poddisruptionbudget.policy/warden-web",
        "networkpolicy.networking.k8s.io/warden-worker",
        "configmap/warden-config",
        "secret/warden-secrets",
        "serviceaccount/warden",
    ):
        assert any(line.startswith(expected + " ") for line in lines), expected
    listed = kubectl("get", "deployments,jobs,services,configmaps", "-n", "warden", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert "warden" not in listed.stdout  # a dry run keeps nothing


@needs_kubectl
def test_a_broken_manifest_is_refused_by_the_dry_run_with_the_servers_reason(kubectl):
    docs = rendered()
    kubectl("create", "namespace", "warden")
    web = by_kind(docs, "Deployment")["warden-web"]
    web["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "cache", "mountPath": "/cache"}
    )

    applied = kubectl(*DRY_RUN, stdin=as_yaml([web]))

    assert applied.returncode != 0
    assert 'volumeMounts[3].name: Not found: "cache"' in applied.stderr


@needs_kubectl
def test_an_upgrade_that_changes_a_deployments_selector_is_refused(kubectl):
    docs = rendered()
    kubectl("create", "namespace", "warden")
    beat = by_kind(docs, "Deployment")["warden-beat"]
    first = kubectl("apply", "-f", "-", stdin=as_yaml([beat]))
    assert first.returncode == 0, first.stderr
    again = kubectl("apply", "-f", "-", stdin=as_yaml([beat]))
    assert again.stdout.strip() == "deployment.apps/warden-beat unchanged", again.stderr

    beat["spec"]["selector"]["matchLabels"]["track"] = "stable"
    beat["spec"]["template"]["metadata"]["labels"]["track"] = "stable"
    changed = kubectl(*DRY_RUN, stdin=as_yaml([beat]))

    assert changed.returncode != 0
    assert "spec.selector" in changed.stderr and "field is immutable" in changed.stderr


def test_the_official_client_dry_runs_every_object_too(kube_cluster):
    """The same server-side dry-run without kubectl: each document POSTed with dryRun=All."""
    from tests.clusters.conftest import official_client

    sim = kube_cluster()
    api = official_client(sim)
    docs = rendered_without_kubectl()
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    answers = []
    for doc in [namespace, *[d for d in docs if d["kind"] != "Namespace"]]:
        dry_run = doc is not namespace  # the namespace must exist for the rest
        _m, url, headers, body, _p = api.param_serialize(
            method="POST",
            resource_path=collection_path(doc),
            query_params=[("dryRun", "All")] if dry_run else [],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=doc,
            auth_settings=["BearerToken"],
        )
        response = api.call_api("POST", url, header_params=headers, body=body)
        response.read()
        assert response.status == 201, (doc["kind"], doc["metadata"]["name"], response.data)
        answers.append(yaml.safe_load(response.data))
    service = next(a for a in answers if a["kind"] == "Service")
    assert service["spec"]["clusterIP"]  # defaulted by the server, as a real one would
    job = next(a for a in answers if a["kind"] == "Job")
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}


@needs_kubectl
def test_the_by_hand_rendering_matches_kustomize():
    def keyed(docs):
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    assert keyed(rendered_without_kubectl()) == keyed(rendered())  # kustomize sorts by kind


def test_exactly_one_beat_which_is_replaced_not_surged():
    beat = by_kind(rendered(), "Deployment")["warden-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"][:4] == [
        "celery",
        "-A",
        "config",
        "beat",
    ]


def test_web_runs_gunicorn_with_liveness_and_readiness_probes_and_a_service():
    docs = rendered()
    web = by_kind(docs, "Deployment")["warden-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "gunicorn" and "config/gunicorn.py" in container["command"]
    assert (ROOT / "config" / "gunicorn.py").exists()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["spec"]["replicas"] >= 2
    service = by_kind(docs, "Service")["warden-web"]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_workers_set_their_pool_and_concurrency_and_serve_metrics():
    worker = by_kind(rendered(), "Deployment")["warden-worker"]
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "--pool=threads" in container["command"]
    assert "--concurrency=$(WORKER_CONCURRENCY)" in container["command"]
    assert int(env["WORKER_CONCURRENCY"]) > 1
    assert env["WORKER_METRICS_PORT"] == str(container["ports"][0]["containerPort"])


def test_every_pod_runs_as_non_root_on_a_read_only_root_with_limits_and_one_image():
    specs = pod_specs(rendered())
    assert set(specs) == {"warden-web", "warden-worker", "warden-beat", "warden-migrate"}
    images = set()
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            images.add(container["image"])
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name  # the only writable places: /tmp and the metrics dir
    assert images == {"registry.example.com/warden:0.1.0"}


def test_secrets_come_from_files_of_the_mounted_secret_and_the_example_has_each_key():
    docs = rendered()
    example = yaml.safe_load((KUSTOMIZE_DIR / "secrets.example.yaml").read_text())
    config = by_kind(docs, "ConfigMap")["warden-config"]["data"]
    secret_words = ("PASSWORD", "SECRET", "TOKEN", "KEY", "DATABASE_URL", "BROKER_URL")
    assert not [k for k in config if any(w in k for w in secret_words)], config
    for name, spec in pod_specs(docs).items():
        volume = next(v for v in spec["volumes"] if "secret" in v)
        assert volume["secret"]["secretName"] == example["metadata"]["name"]
        container = spec["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        files = {e["name"]: e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
        for variable in (
            "SECRET_KEY_FILE",
            "WARDEN_ENCRYPTION_KEYS_FILE",
            "WARDEN_AUDIT_KEYS_FILE",
            "DATABASE_URL_FILE",
            "CELERY_BROKER_URL_FILE",
            "LDAP_BIND_PASSWORD_FILE",
        ):
            path = Path(files[variable])
            assert path.parent == Path(mount["mountPath"]), (name, variable)
            assert path.name in example["stringData"], (name, variable)


def test_disruption_budgets_and_network_policies_select_the_pods_they_mean():
    docs = rendered()
    deployments = by_kind(docs, "Deployment")
    for name, budget in by_kind(docs, "PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "warden-beat" not in by_kind(docs, "PodDisruptionBudget")
    policies = by_kind(docs, "NetworkPolicy")
    web_port = deployments["warden-web"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert (
        policies["warden-web"]["spec"]["ingress"][0]["ports"][0]["port"]
        == (web_port[0]["containerPort"])
    )
