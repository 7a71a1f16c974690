"""/metrics, /healthz and /readyz: what Prometheus and kubelet get, and from which processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from access.models import Role
from access.services import requests as access_requests
from clusters import services
from clusters.tasks import reconcile_fleet_task
from config import metrics

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition (None when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def scrape(client, **headers) -> str:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def test_http_requests_are_counted_and_timed_by_url_name(client):
    login = {"method": "GET", "view": "login"}
    before = sample(scrape(client), "warden_http_requests_total", status="200", **login)
    client.get("/login/")
    client.get("/login/")
    text = scrape(client)
    after = sample(text, "warden_http_requests_total", status="200", **login)
    assert after == (before or 0) + 2
    assert sample(text, "warden_http_request_duration_seconds_count", **login) >= 2
    client.get("/no-such-page/")
    assert sample(scrape(client), "warden_http_requests_total", view="unmatched", status="404")


def test_each_clusters_newest_reconcile_is_reported_from_the_database(
    make_cluster, catalogue, people, django_capture_on_commit_callbacks, client
):
    from access.models import Grant

    cluster, sim = make_cluster(environment="prod", tier="tier-0")
    Grant.objects.create(team=people["sre"], role=catalogue["viewer"])
    counted = sample(scrape(client), "warden_reconcile_runs_total", status="succeeded") or 0
    with django_capture_on_commit_callbacks(execute=True):
        services.reconcile_cluster(cluster.pk)
    # someone deletes Warden's binding: the next reconcile finds drift and repairs it
    from kubernetes import client as k8s_client

    from tests.clusters.conftest import official_client

    k8s_client.RbacAuthorizationV1Api(official_client(sim)).delete_cluster_role_binding(
        "warden-viewer"
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = services.reconcile_cluster(cluster.pk)

    text = scrape(client)
    labels = {"cluster": cluster.name, "environment": "prod", "tier": "tier-0"}
    assert sample(text, "warden_cluster_reconcile_drift", **labels) == run.drift == 1
    assert sample(text, "warden_cluster_reconcile_failed", **labels) == 0
    assert sample(text, "warden_cluster_reconcile_duration_seconds", **labels) == run.duration_s
    assert sample(text, "warden_clusters", state="active") == 1
    assert sample(text, "warden_reconcile_runs_total", status="succeeded") == counted + 2
    assert sample(text, "warden_reconcile_objects_written_total", action="created") >= 2


def test_service_account_token_ages_and_legacy_tokens_are_reported(client, fleet, company):
    from datetime import timedelta

    from django.utils import timezone

    from clusters.models import LegacyToken, ManagedServiceAccount, TokenGeneration

    now = timezone.now()
    account = ManagedServiceAccount.objects.create(
        name="deployer", namespace="ci", owner_team=company.teams["payments"]
    )
    TokenGeneration.objects.create(
        account=account,
        number=1,
        state="revoked",
        trigger="schedule",
        activated_at=now - timedelta(days=40),
    )
    current = TokenGeneration.objects.create(
        account=account,
        number=2,
        state="active",
        trigger="schedule",
        activated_at=now - timedelta(days=3),
        expires_at=now + timedelta(days=30),
    )
    LegacyToken.objects.create(
        cluster=fleet["dev-1"], namespace="ci", name="old-token", uid="u1", last_seen_at=now
    )

    text = scrape(client)

    # one account in namespace ci: its token in force, not the revoked generation
    age = sample(text, "warden_service_account_token_age_seconds", namespace="ci")
    left = sample(text, "warden_service_account_token_expiry_seconds", namespace="ci")
    assert 'name="deployer"' in text
    assert age == pytest.approx(timedelta(days=3).total_seconds(), abs=60)
    assert left == pytest.approx((current.expires_at - now).total_seconds(), abs=60)
    assert sample(text, "warden_legacy_tokens") == 1


def test_pending_requests_and_the_last_directory_sync_are_reported(
    company, fleet, client, directory, settings
):
    from access.services import sync_directory

    # The test directory is empty: the sync sees the company leave, and a grace keeps the request.
    settings.WARDEN_LEAVER_GRACE_HOURS = 24
    access_requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="developer"),
        environments=["staging"],
        namespaces=["payments"],
        justification="I deploy the payments service to staging this week.",
    )
    sync_directory()

    text = scrape(client)

    assert sample(text, "warden_access_requests_pending") == 1
    assert sample(text, "warden_access_request_oldest_pending_seconds") >= 0
    assert sample(text, "warden_directory_sync_last_status", status="succeeded") == 1
    assert sample(text, "warden_directory_sync_last_status", status="failed") == 0
    assert sample(text, "warden_directory_sync_last_success_timestamp_seconds") > 0


def test_celery_tasks_are_counted_with_their_state_and_duration(client):
    before = sample(
        scrape(client),
        "warden_celery_tasks_total",
        task="clusters.tasks.reconcile_fleet_task",
        state="SUCCESS",
    )
    reconcile_fleet_task.delay()  # eager in the tests: the same signals as in a worker
    text = scrape(client)
    name = "clusters.tasks.reconcile_fleet_task"
    assert (
        sample(text, "warden_celery_tasks_total", task=name, state="SUCCESS") == (before or 0) + 1
    )
    assert sample(text, "warden_celery_task_duration_seconds_count", task=name) >= 1


def test_the_queue_length_is_read_from_the_broker(client):
    text = scrape(client)
    assert sample(text, "warden_broker_up") == 1
    assert sample(text, "warden_celery_queue_length", queue="celery") is not None


def test_a_broken_provider_is_left_out_and_counted_and_the_rest_is_served(client):
    @metrics.state_metrics
    def broken():
        raise RuntimeError("database is down")

    try:
        text = scrape(client)
    finally:
        metrics.forget_state_metrics(broken)
    assert sample(text, "warden_metrics_provider_errors_total", provider="broken") >= 1
    assert sample(text, "warden_access_requests_pending") is not None


def test_with_a_metrics_token_scrapers_must_send_it(client, settings):
    settings.METRICS_TOKEN = "scrape-token-1234"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    scrape(client, HTTP_AUTHORIZATION="Bearer scrape-token-1234")


def test_probes_answer_on_a_pod_ip_over_plain_http_in_production_settings(client, settings):
    settings.ALLOWED_HOSTS = ["warden.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    pod = {"HTTP_HOST": "10.1.2.3:8000"}
    assert client.get("/healthz", **pod).content == b"ok"
    assert client.get("/readyz", **pod).status_code == 200
    scrape(client, **pod)
    # everything else still checks the host and redirects to HTTPS
    assert client.get("/login/", **pod).status_code == 400
    assert client.get("/login/", HTTP_HOST="warden.example.com").status_code == 301


def test_readyz_says_what_is_down_without_its_password(client, settings):
    ready = client.get("/readyz").json()
    assert ready == {
        "ok": True,
        "down": [],
        "checks": {"database": ready["checks"]["database"], "broker": ready["checks"]["broker"]},
    }
    settings.CELERY_BROKER_URL = "redis://:broker-password-9@127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"] and body["checks"]["database"]["ok"]
    assert body["checks"]["broker"]["error"]
    assert "broker-password-9" not in response.content.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gunicorn_workers_add_up_their_samples_in_multiprocess_mode(tmp_path):
    """Gunicorn with 2 workers, each restarted after 3 requests: /metrics counts every request,
    whichever process (alive or gone) served it."""
    port = _free_port()
    settings_db = connection.settings_dict
    if connection.vendor == "postgresql":
        database_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + settings_db["NAME"]
    else:
        database_url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": database_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "WARDEN_VAR_DIR": str(tmp_path / "var"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "1",
        "WEB_MAX_REQUESTS": "3",
        "WEB_MAX_REQUESTS_JITTER": "0",
        "WEB_WORKER_TMP_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "gunicorn.log"  # a file: a pipe nobody reads would fill and block it
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:  # refused, reset or timed out while it boots
                assert server.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        for _ in range(10):
            request = urllib.request.Request(base + "/login/", headers={"Host": "localhost"})
            # (generous: a worker restarting after 3 requests loads Django again, slow on 2 cores)
            assert urllib.request.urlopen(request, timeout=60).status == 200
        text = urllib.request.urlopen(base + "/metrics", timeout=60).read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sample(text, "warden_http_requests_total", view="login", status="200") == 10
    files = list((tmp_path / "metrics").glob("counter_*.db"))
    assert len(files) >= 3  # the 10 requests were served by at least 3 worker processes
