"""Notifications: emails to the right people, and a signed webhook to a real HTTPS receiver."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from access import notify
from access.models import Role
from access.services import requests
from core import webhooks
from core.webhooks import WebhookError
from tests.access.test_web_security import load_settings
from tests.fixtures.company import payments_may_break_glass_on_prod

pytestmark = pytest.mark.django_db
WHY = "Checking the payments queue backlog"


@pytest.fixture
def receiver(settings, webhook_receiver):
    webhook_receiver.status = 200
    settings.WARDEN_WEBHOOK_URL = webhook_receiver.url
    settings.WARDEN_WEBHOOK_SECRET = "hook-secret"
    settings.WARDEN_WEBHOOK_CA_FILE = str(webhook_receiver.ca_file)
    return webhook_receiver


def submit(company, **kw):
    return requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="developer"),
        environments=["staging"],
        namespaces=["payments"],
        justification=WHY,
        **kw,
    )


def test_the_webhook_gets_a_signed_event_for_each_step(
    company, fleet, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = submit(company)
    with django_capture_on_commit_callbacks(execute=True):
        requests.approve_request(req, company.judy)

    events = []
    for headers, body in receiver.received:
        assert webhooks.verify_signature("hook-secret", headers["X-Warden-Signature"], body)
        assert not webhooks.verify_signature("another-key", headers["X-Warden-Signature"], body)
        events.append(json.loads(body))
    assert [e["event"] for e in events] == ["request.submitted", "request.decided"]
    assert events[1]["request"]["state"] == "active"
    assert events[0]["request"]["url"].endswith(f"/requests/{req.pk}/")
    assert "alice" in events[0]["text"].lower()


def test_a_failing_webhook_raises_for_a_retry_and_the_decision_stands(
    company, fleet, receiver, django_capture_on_commit_callbacks
):
    receiver.status = 503
    req = submit(company)

    with pytest.raises(WebhookError, match="answered 503"):
        notify.send_webhook("submitted", req.pk)
    # through the task path the failure is logged and retried, never an error for the person
    with django_capture_on_commit_callbacks(execute=True):
        approved = requests.approve_request(req, company.judy)
    assert approved.state == "active"


def test_a_mail_server_that_is_down_does_not_undo_a_request(
    company, fleet, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1

    with django_capture_on_commit_callbacks(execute=True):
        req = submit(company)

    assert req.pk and req.state == "pending"


def test_the_requester_hears_of_the_decision_with_the_comment(
    company, fleet, django_capture_on_commit_callbacks
):
    req = submit(company)
    with django_capture_on_commit_callbacks(execute=True):
        requests.deny_request(req, company.judy, comment="Use the viewer role instead")

    message = mail.outbox[-1]
    assert message.to == ["alice@example.com"]
    assert "denied" in message.subject
    assert "Use the viewer role instead" in message.body


def test_operators_are_emailed_where_no_approver_team_is_named(
    company, fleet, django_capture_on_commit_callbacks
):
    from access.models import ApprovalPolicy

    ApprovalPolicy.objects.get(environment="staging").approver_teams.clear()
    with django_capture_on_commit_callbacks(execute=True):
        submit(company)

    assert mail.outbox[-1].to == ["olivia@example.com"]


def test_emails_speak_in_words_durations_names_and_the_time_zone(company, fleet):
    req = submit(company, duration=timedelta(hours=1))
    req.refresh_from_db()

    asked = notify.build("submitted", req)
    assert "for 1 hour." in asked.body and "1:00:00" not in asked.body
    assert "Developer on" in asked.subject and "Approve or deny it:" in asked.body

    req.state, req.expires_at = "revoked", timezone.now()
    ended = notify.build("ended", req)
    assert "Your access has been revoked" in ended.subject

    req.state = "active"
    decided = notify.build("decided", req)
    assert " UTC." in decided.body


def test_a_break_glass_email_asks_for_a_review_not_a_decision(company, fleet):
    payments_may_break_glass_on_prod(company)
    req = requests.submit_request(
        requester=company.people["alice"],
        role=Role.objects.get(name="developer"),
        environments=["prod"],
        namespaces=["payments"],
        justification=WHY,
        break_glass=True,
    )

    body = notify.build("break_glass", req).body

    assert "Review it:" in body and "Decide:" not in body
    assert "granted at once for 1 hour" in body


def test_the_request_webhook_does_not_follow_a_redirect(company, fleet, receiver):
    receiver.status = 307
    req = submit(company)

    with pytest.raises(WebhookError, match="307"):
        notify.send_webhook("submitted", req.pk)
    assert len(receiver.received) == 1  # the one POST to the configured URL, nothing further


def test_a_request_webhook_at_a_metadata_address_gets_nothing(company, fleet, settings):
    settings.WARDEN_WEBHOOK_URL = "https://169.254.169.254/latest/hook"
    req = submit(company)

    with pytest.raises(WebhookError, match=r"169\.254\.169\.254"):
        notify.send_webhook("submitted", req.pk)


def test_a_request_webhook_with_a_certificate_warden_does_not_trust_gets_nothing(
    company, fleet, receiver, settings
):
    settings.WARDEN_WEBHOOK_CA_FILE = ""  # the system's CAs do not know the receiver's own CA
    req = submit(company)

    with pytest.raises(WebhookError, match="unreachable"):
        notify.send_webhook("submitted", req.pk)
    assert receiver.received == []


def test_a_plain_http_request_webhook_stops_warden_at_start(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="WARDEN_WEBHOOK_URL must be an https"):
        load_settings(monkeypatch, tmp_path, WARDEN_WEBHOOK_URL="http://chat.example.com/hook")
