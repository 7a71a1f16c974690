"""deploy/ validated by the real kube-apiserver: a server-side dry-run of every object."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.test_manifests import KUSTOMIZE_DIR, collection_path, rendered
from tests.k8s.control_plane import object_path

RBAC_DIR = Path(__file__).resolve().parents[3] / "deploy" / "rbac"


def test_every_deploy_object_passes_the_real_servers_dry_run_and_nothing_is_kept(real_cluster):
    docs = rendered()
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    status, answer = real_cluster.call("POST", "/api/v1/namespaces", namespace)
    assert status == 201, answer
    example = yaml.safe_load((KUSTOMIZE_DIR / "secrets.example.yaml").read_text())
    example["metadata"]["namespace"] = namespace["metadata"]["name"]

    refused = {}
    for doc in [d for d in docs if d["kind"] != "Namespace"] + [example]:
        status, answer = real_cluster.call("POST", collection_path(doc) + "?dryRun=All", doc)
        if status != 201:
            refused[f"{doc['kind']}/{doc['metadata']['name']}"] = answer.get("message", answer)

    assert refused == {}
    status, deployments = real_cluster.call("GET", "/apis/apps/v1/namespaces/warden/deployments")
    assert status == 200 and deployments["items"] == []  # a dry run keeps nothing


def test_the_rbac_manifests_pass_the_real_servers_dry_run(real_cluster):
    refused = {}
    for path in sorted(RBAC_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            status, answer = real_cluster.call(
                "PATCH",
                object_path(doc) + "?dryRun=All&fieldManager=kubectl&force=true",
                doc,
                content_type="application/apply-patch+yaml",
            )
            if status >= 300:
                refused[f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"] = answer
    assert refused == {}
