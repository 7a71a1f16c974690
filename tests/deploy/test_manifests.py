"""deploy/kubernetes/: what `kubectl apply -k` sends, accepted by a server-side dry-run, and the
production promises it keeps (non-root, read-only, probes, one beat, secrets from files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.conftest import _write_single

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def rendered() -> list[dict[str, Any]]:
    """The documents `kubectl apply -k deploy/kubernetes` applies (kustomize is in kubectl)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE_DIR)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


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
    _write_single(config, sim, "")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL or "kubectl", "--kubeconfig", str(config), *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )

    run.sim = sim  # type: ignore[attr-defined]
    return run


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


# kubesim serves no OpenAPI document, so kubectl's client-side schema check is off: validation is
# the server's (kubesim's), as with `kubectl apply --validate=false` against a real cluster.
DRY_RUN = ("apply", "--dry-run=server", "--validate=false", "-f", "-")


@needs_kubectl
def test_every_object_passes_a_server_side_dry_run_and_nothing_is_created(kubectl):
    docs = rendered()
    namespace = by_kind(docs, "Namespace")["warden"]
    created = kubectl("apply", "--validate=false", "-f", "-", stdin=as_yaml([namespace]))
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
    first = kubectl("apply", "--validate=false", "-f", "-", stdin=as_yaml([beat]))
    assert first.returncode == 0, first.stderr
    again = kubectl("apply", "--validate=false", "-f", "-", stdin=as_yaml([beat]))
    assert again.stdout.strip() == "deployment.apps/warden-beat unchanged", again.stderr

    beat["spec"]["selector"]["matchLabels"]["track"] = "stable"
    beat["spec"]["template"]["metadata"]["labels"]["track"] = "stable"
    changed = kubectl(*DRY_RUN, stdin=as_yaml([beat]))

    assert changed.returncode != 0
    assert "spec.selector" in changed.stderr and "field is immutable" in changed.stderr


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
