"""Notifications: emails to the right people, and a signed webhook to a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from access import notify
from access.models import Role
from access.services import requests
from tests.fixtures.company import payments_may_break_glass_on_prod

pytestmark = pytest.mark.django_db
WHY = "Checking the payments queue backlog"


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    Receiver.received, Receiver.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.WARDEN_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.WARDEN_WEBHOOK_SECRET = "hook-secret"
    yield Receiver
    server.shutdown()


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
        expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        assert headers["X-Warden-Signature"] == expected
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

    with pytest.raises(OSError):
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
