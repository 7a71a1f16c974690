"""Tokens are stored only encrypted, never logged or audited, shown once, and delivered to an
external secret store by a signed webhook (a real HTTPS server started by the test)."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from access.models import AuditEvent
from clusters import serviceaccounts
from clusters.choices import DeliveryKind, RotationStatus
from core import webhooks
from tests.clusters.sa_helpers import (
    active,
    authenticated_as,
    declare,
    delivered_token,
    raw_column,
)

pytestmark = pytest.mark.django_db
SUBJECT = "system:serviceaccount:default:deployer"
KEY = "k" * 40


@pytest.fixture
def receiver(webhook_receiver):
    return webhook_receiver


def test_a_webhook_receives_the_token_signed_with_the_shared_key(make_cluster, people, receiver):
    # given
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"])
    serviceaccounts.add_delivery_target(
        account,
        kind=DeliveryKind.WEBHOOK,
        url=receiver.url,
        ca_bundle=receiver.ca_pem,
        signing_key=KEY,
    )
    # when
    run = serviceaccounts.rotate_account(account.pk)
    # then
    assert run.status == RotationStatus.SUCCEEDED, run.error
    [(headers, body)] = receiver.received
    assert webhooks.verify_signature(KEY, headers["X-Warden-Signature"], body)
    assert not webhooks.verify_signature("x" * 40, headers["X-Warden-Signature"], body)
    assert not webhooks.verify_signature(KEY, headers["X-Warden-Signature"], body + b" ")
    payload = json.loads(body)
    assert payload["account"] == "default/deployer"
    assert payload["generation"] == 1
    token = payload["clusters"][cluster.name]["token"]
    assert authenticated_as(sim, token) == SUBJECT
    kubeconfig = yaml.safe_load(payload["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["token"] == token


def test_a_webhook_that_refuses_leaves_the_old_token_and_is_tried_again(
    make_cluster, people, receiver
):
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"])
    serviceaccounts.add_delivery_target(
        account,
        kind=DeliveryKind.WEBHOOK,
        url=receiver.url,
        ca_bundle=receiver.ca_pem,
        signing_key=KEY,
    )
    serviceaccounts.rotate_account(account.pk)
    first = json.loads(receiver.received[0][1])["clusters"][cluster.name]["token"]

    receiver.status = 503
    failed = serviceaccounts.rotate_account(account.pk, force=True)
    assert failed.status == RotationStatus.FAILED
    assert "503" in failed.error
    assert active(account).number == 1
    assert authenticated_as(sim, first) == SUBJECT

    receiver.status = 200
    assert serviceaccounts.rotate_account(account.pk).status == RotationStatus.SUCCEEDED
    assert json.loads(receiver.received[-1][1])["generation"] == 2


def test_a_webhook_with_a_certificate_warden_does_not_trust_gets_nothing(
    make_cluster, people, receiver
):
    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"])
    serviceaccounts.add_delivery_target(
        account, kind=DeliveryKind.WEBHOOK, url=receiver.url, signing_key=KEY
    )

    failed = serviceaccounts.rotate_account(account.pk)

    assert failed.status == RotationStatus.FAILED
    assert "CERTIFICATE_VERIFY_FAILED" in failed.error or "certificate" in failed.error
    assert receiver.received == []


def test_a_plain_http_webhook_is_refused(make_cluster, people):
    from django.core.exceptions import ValidationError

    cluster, _sim = make_cluster()
    account = declare(cluster, people["payments"])
    with pytest.raises(ValidationError, match="https"):
        serviceaccounts.add_delivery_target(
            account, kind=DeliveryKind.WEBHOOK, url="http://vault.internal/hook", signing_key=KEY
        )


def test_a_token_is_never_logged_audited_or_stored_in_clear(make_cluster, people, caplog, receiver):
    # given: every path a token takes — issue, Secret and webhook delivery, show-once, a failure
    caplog.set_level(logging.DEBUG)
    cluster, sim = make_cluster()
    account = declare(
        cluster,
        people["payments"],
        consumer=(cluster, "default", "deployer-token"),
        show_to_owner=True,
    )
    serviceaccounts.add_delivery_target(
        account,
        kind=DeliveryKind.WEBHOOK,
        url=receiver.url,
        ca_bundle=receiver.ca_pem,
        signing_key=KEY,
    )
    serviceaccounts.rotate_account(account.pk)
    tokens = [delivered_token(sim)]
    stored = raw_column("clusters_tokengeneration", "sealed_tokens")
    receiver.status = 500
    serviceaccounts.rotate_account(account.pk, force=True)  # fails at the webhook
    stored += raw_column("clusters_tokengeneration", "sealed_tokens")
    receiver.status = 200
    serviceaccounts.rotate_account(account.pk)
    tokens.append(delivered_token(sim))
    kubeconfig = serviceaccounts.reveal(active(account).pk, actor=None)
    assert tokens[1] in kubeconfig

    # then
    assert any(s.startswith("gAAAA") for s in stored)  # Fernet, while it had to be kept
    events = list(AuditEvent.objects.values_list("before", "after", "reason", "object_repr"))
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "serviceaccount.token_issued",  # the failed attempt's partial progress
        "serviceaccount.token_delivered",
        "serviceaccount.rotation_failed",
        "serviceaccount.rotated",  # the attempts that did every step in one go
        "serviceaccount.token_shown",
    } <= actions
    runs = list(account.rotations.values_list("error", "steps"))
    for token in tokens:
        assert token not in caplog.text
        assert all(token not in s for s in stored)
        assert token not in repr(events)
        assert token not in repr(runs)
    assert raw_column("clusters_tokengeneration", "sealed_tokens") == ["", ""]


def test_a_token_is_shown_once_then_never_again(make_cluster, people):
    cluster, sim = make_cluster()
    account = declare(cluster, people["payments"], show_to_owner=True)
    serviceaccounts.rotate_account(account.pk)
    generation = active(account)
    assert generation.reveal_pending
    assert generation.sealed_tokens != ""  # kept, encrypted, until shown

    kubeconfig = yaml.safe_load(serviceaccounts.reveal(generation.pk, actor=None))

    token = kubeconfig["users"][0]["user"]["token"]
    assert authenticated_as(sim, token) == SUBJECT
    assert kubeconfig["contexts"][0]["context"]["namespace"] == "default"
    with pytest.raises(serviceaccounts.AlreadyShown):
        serviceaccounts.reveal(generation.pk, actor=None)
    generation.refresh_from_db()
    assert generation.sealed_tokens == ""
