"""The real kube-apiserver trusts Dex for people, with the prefixes a cluster declares in Warden:
a person's own ID token is the user and groups that Warden's bindings name."""

from __future__ import annotations

from typing import Any

import requests

from tests.dex.login import cli_tokens
from tests.dex.server import DexServer
from tests.k8s.control_plane import RealCluster


def _as(cluster: RealCluster, token: str, method: str, path: str, body: Any = None) -> Any:
    return requests.request(
        method,
        cluster.server_url + path,
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(cluster.folder.parent / "ca.crt"),
        timeout=10,
    )


def test_a_persons_id_token_is_the_prefixed_directory_user_and_groups(
    oidc_cluster: RealCluster, dex: DexServer, directory: Any
) -> None:
    # given
    directory.add_person("erin", password="erin-pw")
    directory.add_group("team-a", people=["erin"])
    id_token = cli_tokens(dex, "erin", "erin-pw")["id_token"]

    # when
    review = _as(
        oidc_cluster,
        id_token,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )

    # then
    assert review.status_code == 201, review.text
    user = review.json()["status"]["userInfo"]
    assert user["username"] == "oidc:erin"
    assert "oidc:team-a" in user["groups"]


def test_a_binding_to_the_prefixed_name_is_what_lets_the_person_in(
    oidc_cluster: RealCluster, dex: DexServer, directory: Any
) -> None:
    # given
    directory.add_person("erin", password="erin-pw")
    id_token = cli_tokens(dex, "erin", "erin-pw")["id_token"]
    pods = "/api/v1/namespaces/default/pods"
    assert _as(oidc_cluster, id_token, "GET", pods).status_code == 403

    # when
    status, _ = oidc_cluster.call(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "erin-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "oidc:erin"}
            ],
        },
    )

    # then
    assert status == 201
    assert _as(oidc_cluster, id_token, "GET", pods).status_code == 200


def test_a_token_from_another_issuer_is_refused(oidc_cluster: RealCluster) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2V2aWwifQ."

    assert _as(oidc_cluster, forged, "GET", "/api/v1/namespaces").status_code == 401
