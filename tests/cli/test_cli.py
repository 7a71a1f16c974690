"""`warden`, the command line for people, end to end: the CLI talks HTTP to live_server, which
runs the real services, which reconcile kubesim clusters over HTTPS."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from access.models import AccessRequest, Grant, Role
from access.services import tokens
from tests.factories import warden

pytestmark = pytest.mark.django_db(transaction=True)
WHY = "Rolling out the payments fix for INC-77"


@pytest.fixture
def as_person(company, live_server, monkeypatch, tmp_path):
    """as_person("alice") points the CLI at live_server with a fresh token of alice's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))

    def use(who: str) -> str:
        _, secret = tokens.create_api_token(owner=company.users[who], name="cli")
        monkeypatch.setenv("WARDEN_URL", live_server.url)
        monkeypatch.setenv("WARDEN_TOKEN", secret)
        return secret

    return use


def test_a_developer_requests_gets_approved_and_writes_a_kubeconfig(
    as_person, company, make_cluster, rbac, settings, tmp_path
):
    settings.WARDEN_KUBECONFIG_USER_EXEC = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "kubectl",
        "args": ["oidc-login", "get-token", "--username={username}"],
    }
    cluster, sim = make_cluster(environment="staging")
    as_person("alice")

    code, out, _ = warden(
        "request",
        "--role",
        "developer",
        "--env",
        "staging",
        "--namespace",
        "default",
        "--for",
        "4h",
        "--why",
        WHY,
        stdin="y\n",
    )
    assert code == 0, out
    assert f"{cluster.name}: ClusterRole edit, default" in out
    assert "Approvers: 1 approval by Judy, Peggy (team approvers)" in out
    req = AccessRequest.objects.get()
    assert f"Request #{req.pk} is waiting for approval." in out

    as_person("judy")
    code, out, _ = warden("requests", "--inbox")
    assert f"#{req.pk}  pending   alice" in out
    code, out, _ = warden("approve", str(req.pk), "--comment", "ok")
    assert code == 0 and "is active until" in out
    assert rbac.subjects(sim, "warden-developer", "default") == ["alice"]

    as_person("alice")
    code, out, _ = warden("access")
    assert f"developer  via request #{req.pk}" in out and cluster.name in out
    code, out, _ = warden("kubeconfig", "--cluster", cluster.name, "--use")
    assert code == 0, out
    written = yaml.safe_load((tmp_path / "kube" / "config").read_text())
    assert written["current-context"] == cluster.name
    assert written["clusters"][0]["cluster"]["server"] == sim.server_url
    ca = base64.b64decode(written["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca.decode() == cluster.ca_bundle
    assert written["contexts"][0]["context"]["namespace"] == "default"
    assert written["users"][0]["user"]["exec"]["args"][-1] == "--username=alice"
    assert oct(os.stat(tmp_path / "kube" / "config").st_mode & 0o777) == "0o600"


def test_a_refused_request_is_not_filed_and_says_why(as_person, company, make_cluster):
    make_cluster(environment="prod")
    as_person("alice")

    code, out, err = warden(
        "request", "--role", "developer", "--env", "prod", "--for", "30d", "--why", WHY, "--yes"
    )

    assert code == 1
    assert "name the namespaces you need" in out
    assert "nothing was filed" in err
    assert not AccessRequest.objects.exists()


def test_without_confirmation_nothing_is_filed(as_person, company, make_cluster):
    make_cluster(environment="staging")
    as_person("alice")

    code, out, _ = warden(
        "request",
        "--role",
        "developer",
        "--env",
        "staging",
        "--namespace",
        "x",
        "--why",
        WHY,
        stdin="n\n",
    )

    assert code == 1 and "Not submitted." in out
    assert not AccessRequest.objects.exists()


def test_approving_your_own_request_or_a_stranger_deciding_is_refused(
    as_person, company, make_cluster
):
    make_cluster(environment="staging")
    as_person("alice")
    warden(
        "request",
        "--role",
        "developer",
        "--env",
        "staging",
        "--namespace",
        "x",
        "--why",
        WHY,
        "--yes",
    )
    pk = AccessRequest.objects.get().pk

    code, _, err = warden("approve", str(pk))
    assert code == 1 and "cannot approve your own request" in err
    as_person("mallory")
    code, _, err = warden("deny", str(pk), "--reason", "no")
    assert code == 1 and "No such request" in err
    assert AccessRequest.objects.get().state == "pending"


def test_kubeconfig_refuses_a_cluster_you_cannot_reach(as_person, company, make_cluster):
    cluster, _ = make_cluster(environment="staging")
    as_person("mallory")

    code, _, err = warden("kubeconfig", "--cluster", cluster.name)

    assert code == 1
    assert f"no access on a cluster named '{cluster.name}'" in err


def test_why_offers_the_smallest_role_as_a_command(as_person, company, make_cluster):
    cluster, _ = make_cluster(environment="dev")
    as_person("alice")
    message = (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource '
        '"pods" in API group "" in the namespace "payments"'
    )

    code, out, _ = warden("why", message)

    assert code == 0, out
    assert "Smallest role that allows it: viewer" in out
    assert f"warden request --role viewer --cluster {cluster.name} --namespace payments" in out


def test_a_bad_token_says_to_make_a_new_one(company, live_server, monkeypatch):
    monkeypatch.setenv("WARDEN_URL", live_server.url)
    monkeypatch.setenv("WARDEN_TOKEN", "wdn_0_nope")

    code, _, err = warden("access")

    assert code == 1
    assert f"{live_server.url}/tokens/" in err


def test_configure_saves_a_private_config_and_the_console_script_uses_it(
    company, live_server, tmp_path
):
    _, secret = tokens.create_api_token(owner=company.users["bob"], name="laptop")
    Grant.objects.create(person=company.people["bob"], role=Role.objects.get(name="viewer"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_") and k != "KUBECONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    script = Path(sys.executable).with_name("warden")

    configured = subprocess.run(
        [script, "configure", "--url", live_server.url, "--token", secret],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    access = subprocess.run(
        [script, "access"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert configured.returncode == 0, configured.stderr
    config = tmp_path / "warden" / "config"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert access.returncode == 0, access.stderr
    assert "viewer  via granted to you  until standing" in access.stdout


def test_a_duration_too_long_to_keep_is_explained_not_a_crash(as_person, company, make_cluster):
    make_cluster(environment="staging")
    as_person("alice")

    code, _, err = warden(
        "request", "--role", "developer", "--env", "staging", "--namespace", "x",
        "--for", "99999999999d", "--why", WHY, "--yes",
    )  # fmt: skip

    assert code == 1
    assert "at most 3660d (ten years)" in err
    assert not AccessRequest.objects.exists()
