"""Logs: JSON or plain lines with the request/task id, and no token, password or kubeconfig.

The real code paths that handle secrets run with every logger at DEBUG, their records going
through the filter every handler of settings.LOGGING carries (installed on pytest's caplog
handler too): registering a cluster with a token, a reconcile that retries, a directory sync and
logins with the bind and users' passwords, a service-account token issued by TokenRequest.
"""

from __future__ import annotations

import json
import logging
import logging.config

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from access import services as access_services
from access.audit import current_request_id
from clusters import k8s, services
from clusters.k8s import Endpoint
from config import logconfig
from config.logconfig import REDACTED, ScrubSecrets, logging_config, scrub
from tests.clusters.conftest import kubeconfig_for
from tests.fixtures.slapd import SERVICE_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_logs(caplog):
    """Every logger at DEBUG; caplog's handler filters records as the production handler does."""
    scrubber = ScrubSecrets()
    caplog.handler.addFilter(scrubber)
    caplog.set_level(logging.DEBUG)
    for noisy in ("django_auth_ldap", "urllib3", "kubernetes", "clusters", "access", "warden"):
        logging.getLogger(noisy).setLevel(logging.DEBUG)
    yield caplog
    caplog.handler.removeFilter(scrubber)


def everything_logged(caplog) -> str:
    """The formatted lines and every attribute of every record (extras included)."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.extend(str(value) for value in record.__dict__.values())
    return "\n".join(parts)


# --- the filter and the formats ------------------------------------------------------------------


def test_every_handler_of_the_configuration_scrubs_and_carries_the_request_id():
    for fmt in ("plain", "json"):
        config = logging_config("INFO", fmt)
        for handler in config["handlers"].values():
            assert handler["filters"] == ["request_id", "scrub_secrets"]
    assert django_settings.LOGGING["handlers"]["console"]["filters"] == [
        "request_id",
        "scrub_secrets",
    ]
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config("INFO", "xml")


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /api Authorization: Bearer abcdef0123456789", "abcdef0123456789"),
        ("headers={'authorization': 'Bearer s3cr3t-t0k3n'}", "s3cr3t-t0k3n"),
        (
            "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl issued",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl",
        ),
        ("broker redis://:hunter2hunter2@redis:6379/0 down", "hunter2hunter2"),
        ('{"token": "k8s-admin-token-value", "name": "x"}', "k8s-admin-token-value"),
        ("users:\n- name: a\n  user:\n    token: kubeconfig-token-1\n", "kubeconfig-token-1"),
        ("client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRF", "LS0tLS1CRUdJTiBFQyBQUklWQVRF"),
        ("password=correct-horse-battery", "correct-horse-battery"),
        ("fetching url=https://vault/v1/x?access_token=q1w2e3r4t5 failed", "q1w2e3r4t5"),
        ("opts=password=nested-secret-1 retry", "nested-secret-1"),
        ("stored gAAAAABmZXJuZXQtY2lwaGVydGV4dC1oZXJlLWFuZC1tb3Jl", "gAAAAABmZXJuZXQ"),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkey\n-----END EC PRIVATE KEY-----",
            "MHcCAQEEIBkey",
        ),
    ],
)
def test_what_looks_like_a_secret_is_scrubbed_whatever_its_value(line, secret):
    cleaned = scrub(line)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_thousands_of_remembered_tokens_are_each_scrubbed_and_ordinary_text_is_kept():
    tokens = [f"fleet-token-{i:05d}-{'x' * (i % 7)}" for i in range(logconfig.LINEAR_SCAN_MAX * 40)]
    logconfig.remember(*tokens)
    line = f"cluster a said {tokens[17]}; cluster b said {tokens[-1]}."
    assert scrub(line) == "cluster a said [redacted]; cluster b said [redacted]."
    # a remembered secret that holds a shorter one is blanked out whole
    logconfig.remember("fleet-token-00017-xxxxxx-and-more")
    assert scrub("got fleet-token-00017-xxxxxx-and-more") == "got [redacted]"
    assert scrub("user=alice role=viewer ns=payments") == "user=alice role=viewer ns=payments"


def test_secrets_of_the_settings_and_those_met_at_run_time_are_scrubbed_anywhere(settings):
    settings.WARDEN_DIRECTORY = {**settings.WARDEN_DIRECTORY, "BIND_PASSWORD": "ldap-bind-pw-42"}
    logconfig.remember("plain-cluster-token-7")
    record = logging.LogRecord(
        "access.sync",
        logging.ERROR,
        __file__,
        1,
        "bind failed with %s for %s",
        ("ldap-bind-pw-42", "plain-cluster-token-7"),
        None,
    )
    record.details = {"kubeconfig": "apiVersion: v1", "note": "with plain-cluster-token-7"}
    record.bearer_token = "anything"
    try:
        raise RuntimeError("the server echoed ldap-bind-pw-42")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()

    ScrubSecrets().filter(record)
    line = logging.Formatter("%(message)s").format(record)

    assert "ldap-bind-pw-42" not in line and "plain-cluster-token-7" not in line
    assert "bind failed with [redacted] for [redacted]" in line
    assert "the server echoed [redacted]" in line  # the traceback too
    assert record.details == {"kubeconfig": REDACTED, "note": "with [redacted]"}
    assert record.bearer_token == REDACTED
    # an ordinary word is not a secret
    assert scrub("reconciled 3 clusters in 2.1 s") == "reconciled 3 clusters in 2.1 s"


def test_json_lines_carry_time_level_logger_message_and_the_request_id(capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(logging_config("INFO", "json"))
    token = current_request_id.set("req-4711")
    try:
        logging.getLogger("clusters.services").info(
            "reconciled %s", "prod-1", extra={"cluster": "prod-1", "token": "never-shown-value"}
        )
    finally:
        current_request_id.reset(token)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    data = json.loads(line)
    assert data["level"] == "INFO" and data["logger"] == "clusters.services"
    assert data["message"] == "reconciled prod-1" and data["request_id"] == "req-4711"
    assert data["cluster"] == "prod-1" and data["token"] == REDACTED
    assert "time" in data and "never-shown-value" not in line


def test_a_web_request_logs_one_line_with_its_id_and_no_query_string(client, debug_logs):
    response = client.get("/login/?next=/secret-place", HTTP_X_REQUEST_ID="abc-123")
    assert response.status_code == 200
    lines = [r for r in debug_logs.records if r.name == "warden.http"]
    assert len(lines) == 1
    assert lines[0].request_id == "abc-123"
    assert lines[0].status == 200 and lines[0].view == "login"
    assert "next=" not in lines[0].getMessage()


# --- the real code paths that handle secrets ----------------------------------------------------


def test_registering_and_reconciling_a_cluster_never_logs_its_token(
    client, operator, kube_cluster, debug_logs, django_capture_on_commit_callbacks
):
    sim = kube_cluster()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("cluster-register"),
            {
                "source": "kubeconfig",
                "kubeconfig": kubeconfig_for(sim),
                "environment": "dev",
                "tier": "tier-2",
                "binding": "groups",
            },
        )
    assert response.status_code == 302
    # a refused registration: the same token, a cluster that answers 401
    wrong = client.post(
        reverse("cluster-register"),
        {
            "source": "kubeconfig",
            "kubeconfig": kubeconfig_for(sim, token=sim.admin_token + "x"),
            "name": "other",
            "environment": "dev",
            "tier": "tier-2",
            "binding": "groups",
        },
    )
    assert wrong.status_code == 400
    # a reconcile that meets 503s and retries (logged with the API's answer)
    from clusters.models import Cluster

    cluster = Cluster.objects.get(name=sim.name)
    sim.faults.update({"error_rate": 1.0})
    k8s.forget_clients()
    run = services.reconcile_cluster(cluster.pk)
    sim.faults.clear()

    assert run is not None and run.status == "failed"
    logged = everything_logged(debug_logs)
    assert "retrying GET" in logged and "POST /clusters/register/" in logged  # records flowed
    assert sim.admin_token not in logged
    assert sim.admin_token + "x" not in logged


def test_the_bind_password_and_peoples_passwords_never_reach_a_log(
    client, directory, settings, debug_logs
):
    directory.add_person("alice", password="wonderland-42")
    access_services.sync_directory()
    assert (
        client.post(
            reverse("login"), {"username": "alice", "password": "wonderland-42"}
        ).status_code
        == 302
    )
    client.logout()
    client.post(reverse("login"), {"username": "alice", "password": "looking-glass-7"})
    # a sync with a wrong bind password fails, and says so in the log
    settings.WARDEN_DIRECTORY = {**settings.WARDEN_DIRECTORY, "BIND_PASSWORD": "wrong-secret-9"}
    failed = access_services.sync_directory()

    assert failed.status == "failed"
    logged = everything_logged(debug_logs)
    assert "directory sync" in logged and "Binding as" in logged  # records flowed
    for secret in (SERVICE_PASSWORD, "wrong-secret-9", "wonderland-42", "looking-glass-7"):
        assert secret not in logged, secret


def test_a_service_account_token_from_token_request_is_never_logged(kube_cluster, debug_logs, rbac):
    sim = kube_cluster()
    core = rbac.core(sim)
    from kubernetes import client as k8s_client

    core.create_namespaced_service_account(
        "default", k8s_client.V1ServiceAccount(metadata=k8s_client.V1ObjectMeta(name="deployer"))
    )
    endpoint = Endpoint(
        api_url=sim.server_url, token=sim.admin_token, ca_pem=sim.ca_cert_pem.decode()
    )
    answer = k8s.KubeClient(endpoint).request(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/deployer/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    issued = answer["status"]["token"]

    # code that handles the token later slips and logs it, plainly or inside a structure
    logging.getLogger("clusters.serviceaccounts").info(
        "delivered", extra={"target": {"kubeconfig": "...", "value": issued}}
    )
    logging.getLogger("clusters.serviceaccounts").info("raw %s", issued)

    logged = everything_logged(debug_logs)
    assert "delivered" in logged
    assert issued not in logged


@pytest.fixture
def rbac(db):
    from tests.clusters.conftest import official_client

    class Reader:
        def core(self, sim):
            from kubernetes import client as k8s_client

            return k8s_client.CoreV1Api(official_client(sim))

    return Reader()
