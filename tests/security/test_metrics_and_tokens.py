"""Issue 15, item 14: metrics, readiness, discovery errors and API tokens leak nothing.

- Production settings (DEBUG off) refuse to start without METRICS_TOKEN; /metrics (and a
  worker's own /metrics) wants it.
- /readyz tells anyone whether the pod is ready, and the details only to the metrics token.
- A kubeconfig in a discovery folder that is not valid YAML is reported by file and line,
  never by quoting the line (which may hold a token).
- An API token cannot mint a token that outlives it; a logged-in session can.
"""

from __future__ import annotations

import runpy
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken
from access.services import tokens
from clusters import discovery
from clusters.choices import DiscoveryTrigger
from clusters.models import DiscoveryRun, DiscoverySource
from config import metrics

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "scrape-token-1501"


def production_settings(monkeypatch, tmp_path, **env):
    """config/settings.py as a production process reads it (DEBUG off)."""
    for name in ("DEBUG", "METRICS_TOKEN", "METRICS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WARDEN_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "x" * 50)
    monkeypatch.setenv("WARDEN_ENCRYPTION_KEYS", "OtSVsMAzsHnxfcSlfLjnxu19VXjB3t21RlJbIij8Pf4=")
    monkeypatch.setenv("WARDEN_AUDIT_KEYS", "a" * 32)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings.py"))


# --- /metrics and /readyz ---------------------------------------------------------------------


def test_production_settings_refuse_to_start_without_a_metrics_token(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="METRICS_TOKEN"):
        production_settings(monkeypatch, tmp_path)

    loaded = production_settings(monkeypatch, tmp_path, METRICS_TOKEN=METRICS_TOKEN)
    assert loaded["METRICS_TOKEN"] == METRICS_TOKEN
    # local use (DEBUG) still needs none
    assert production_settings(monkeypatch, tmp_path, DEBUG="1")["METRICS_TOKEN"] == ""


def test_metrics_want_the_token(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics").status_code == 401
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert answer.status_code == 200


def test_a_workers_own_metrics_want_the_token_too():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = metrics.serve_worker_metrics(port, METRICS_TOKEN)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.code == 401


def test_readyz_shows_details_only_to_the_metrics_token(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    settings.CELERY_BROKER_URL = "redis://:broker-password-9@127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    anyone = client.get("/readyz")
    scraper = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")

    assert anyone.status_code == scraper.status_code == 503
    assert anyone.json() == {"ok": False}
    assert scraper.json()["down"] == ["broker"]
    assert scraper.json()["checks"]["broker"]["error"]
    assert "broker-password-9" not in scraper.content.decode()


# --- discovery folders --------------------------------------------------------------------------

BROKEN_KUBECONFIG = """\
apiVersion: v1
kind: Config
users:
- name: warden
  user:
    token: eyJhbGciOiJSUzI1NiJ9.prod-secret-token: [
"""


def test_a_broken_kubeconfig_in_a_discovery_folder_is_named_not_quoted(tmp_path, client, company):
    folder = tmp_path / "kubeconfigs"
    folder.mkdir()
    (folder / "prod.yaml").write_text(BROKEN_KUBECONFIG)
    (folder / "binary.yaml").write_bytes(b"kind: Config\nusers: [\xff\xfeprod-secret-token]\n")
    source = DiscoverySource.objects.create(
        name="folder",
        kind="kubeconfig-dir",
        path=str(folder),
        rules=[{"name": "*", "environment": "staging", "tier": "tier-2"}],
    )

    discovery.discover(source.pk, DiscoveryTrigger.OPERATOR)

    run = DiscoveryRun.objects.get(source=source)
    problems = {p["cluster"]: p["problem"] for p in run.problems}
    assert "line 6" in problems["prod.yaml#*"]
    assert all("prod-secret-token" not in text for text in problems.values())
    client.force_login(company.olivia)
    page = client.get(reverse("cluster-discovery-detail", args=[source.pk]))
    assert "prod.yaml" in page.content.decode()
    assert "prod-secret-token" not in page.content.decode()


# --- API tokens minting API tokens --------------------------------------------------------------


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.mark.parametrize("who", ["alice", "judy", "olivia"])
def test_an_api_token_cannot_mint_a_token_that_outlives_it(company, who):
    parent, secret = tokens.create_api_token(owner=company.users[who], name="ci", days=1)

    answer = bearer(secret).post("/api/v1/tokens/", {"name": "forever", "days": 366}, format="json")

    minted = ApiToken.objects.filter(owner=company.users[who], name="forever").first()
    if answer.status_code == 201:
        assert minted is not None and minted.expires_at <= parent.expires_at
    else:
        assert answer.status_code == 400 and minted is None
    # and revoking nothing of that: a token minted by a token is still only the owner's
    assert not ApiToken.objects.filter(expires_at__gt=parent.expires_at).exists()


def test_a_logged_in_session_mints_a_token_for_as_long_as_allowed(client, company):
    client.force_login(company.alice)

    page = client.post(reverse("api-tokens"), {"name": "laptop", "days": 366})
    api = client.post(
        "/api/v1/tokens/", {"name": "ci", "days": 366}, content_type="application/json"
    )

    assert page.status_code == 200 and api.status_code == 201, api.content
    soon = timezone.now() + timedelta(days=365)
    assert ApiToken.objects.filter(owner=company.alice, expires_at__gt=soon).count() == 2
