"""Notifications about access requests: email (Django's mail framework) and a chat/webhook hook.

Queued after the transaction commits, as Celery tasks that retry on their own, so a mail server
or webhook that is down never undoes or blocks a decision. Webhooks go through Warden's one
webhook sender (core/webhooks.py: HTTPS only, signed with WARDEN_WEBHOOK_SECRET when it is set).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from access.choices import RequestState
from access.models import AccessRequest, Membership
from access.words import duration_in_words, moment
from core import queue, webhooks

logger = logging.getLogger(__name__)
EVENTS = ("submitted", "approval", "decided", "break_glass", "expiring", "ended")


def later(event: str, request_id: int) -> None:
    """Queue the notifications of `event` once the surrounding transaction commits."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification {event!r}")
    transaction.on_commit(lambda: _queue(event, request_id))


def _queue(event: str, request_id: int) -> None:
    try:
        queue.send("access.tasks.notify_email_task", event, request_id)
        if settings.WARDEN_WEBHOOK_URL:
            queue.send("access.tasks.notify_webhook_task", event, request_id)
    except Exception:
        # The change is committed; a lost notice must not turn it into an error page.
        logger.exception("could not queue the %s notification of request #%s", event, request_id)


@dataclass(frozen=True)
class Message:
    recipients: list[str]
    subject: str
    body: str


def request_url(req: AccessRequest) -> str:
    base: str = settings.WARDEN_BASE_URL
    return base.rstrip("/") + reverse("request-detail", args=[req.pk])


# How a person's access ended, as the end of "Your access has ...".
ENDED_WORDS: dict[str, str] = {
    RequestState.EXPIRED: "expired",
    RequestState.REVOKED: "been revoked",
}


def _what(req: AccessRequest) -> str:
    what = f"{req.role.display_name} on {req.scope_text}"
    if req.for_service_account:
        what += f" for service account {req.for_service_account}"
    return what


def approver_emails(req: AccessRequest) -> list[str]:
    """Everyone who may decide the request now, except the requester."""
    teams = list(req.approver_teams.values_list("pk", flat=True))
    if teams:
        emails = set(
            Membership.objects.filter(
                team_id__in=teams, team__is_active=True, person__is_active=True
            ).values_list("person__email", flat=True)
        )
    else:
        emails = set(
            get_user_model()
            .objects.filter(is_staff=True, is_active=True)
            .values_list("email", flat=True)
        )
    manager = getattr(req.requester, "manager", None) if req.manager_may_approve else None
    if manager is not None and manager.is_active:
        emails.add(manager.email)
    emails.discard(req.requester.email)
    return sorted(e for e in emails if e)


def build(event: str, req: AccessRequest) -> Message | None:
    """The email of one event, or None when nobody is to be told."""
    who = req.requester.display_name or req.requester.username
    link = request_url(req)
    if event in ("submitted", "break_glass"):
        if event == "break_glass":
            subject = f"[Warden] BREAK-GLASS: {who} took {_what(req)}"
            lead = (
                f"{who} used break-glass access: {_what(req)}, granted at once for "
                f"{duration_in_words(req.duration)}. Please review it afterwards."
            )
            action = "Review it"
        else:
            subject = f"[Warden] {who} asks for {_what(req)}"
            lead = f"{who} asks for {_what(req)} for {duration_in_words(req.duration)}."
            action = "Approve or deny it"
        body = (
            f"{lead}\n\nJustification: {req.justification}\n"
            f"Ticket: {req.ticket or '-'}\n\n{action}: {link}\n"
        )
        return Message(approver_emails(req), subject, body)
    recipient = [req.requester.email] if req.requester.email else []
    if event == "approval":
        done = req.approvals.filter(decision="approve").count()
        subject = f"[Warden] Request #{req.pk}: {done} of {req.approvals_required} approvals"
        body = (
            f"Your request for {_what(req)} has {done} of {req.approvals_required} approvals."
            f"\n{link}\n"
        )
    elif event == "decided":
        verdict = (
            "approved" if req.state == RequestState.ACTIVE else req.get_state_display().lower()
        )
        subject = f"[Warden] Request #{req.pk} {verdict}: {_what(req)}"
        until = f" until {moment(req.expires_at)}" if req.expires_at else ""
        comment = f"\nComment: {req.decision_comment}" if req.decision_comment else ""
        body = f"Your request for {_what(req)} was {verdict}{until}.{comment}\n{link}\n"
    elif event == "expiring":
        subject = f"[Warden] Your access ends soon: {_what(req)}"
        ends = f"at {moment(req.expires_at)}" if req.expires_at else "soon"
        body = (
            f"Your access ({_what(req)}) ends {ends}.\n"
            f"Need more time? {link}#extend\n"
            "Where its approval policy allows, you extend it there in one click; otherwise the "
            "page offers to ask the approvers again.\n"
        )
    elif event == "ended":
        ended = ENDED_WORDS.get(req.state, "ended")
        subject = f"[Warden] Your access has {ended}: {_what(req)}"
        body = f"Your access ({_what(req)}) has {ended}.\n{link}\n"
    else:
        return None
    return Message(recipient, subject, body)


def send_email(event: str, request_id: int) -> int:
    """Send one event's email; returns how many recipients it went to."""
    req = AccessRequest.objects.select_related("requester", "role").get(pk=request_id)
    message = build(event, req)
    if message is None or not message.recipients:
        return 0
    send_mail(
        message.subject,
        message.body,
        settings.DEFAULT_FROM_EMAIL,
        message.recipients,
        fail_silently=False,
    )
    return len(message.recipients)


def webhook_payload(event: str, req: AccessRequest) -> dict[str, Any]:
    message = build(event, req)
    return {
        "event": f"request.{event}",
        "text": message.subject if message else "",
        "request": {
            "id": req.pk,
            "url": request_url(req),
            "requester": req.requester.username,
            "role": req.role.name,
            "environments": req.environments,
            "tiers": req.tiers,
            "clusters": req.clusters,
            "namespaces": req.namespaces,
            "state": req.state,
            "break_glass": req.break_glass,
            "expires_at": req.expires_at.isoformat() if req.expires_at else None,
        },
    }


def tell_team_later(team_id: int, subject: str, body: str) -> None:
    """Queue an email to a team's active members once the surrounding transaction commits (a
    service account's owners hear where its tokens now go)."""
    transaction.on_commit(lambda: _queue_team(team_id, subject, body))


def _queue_team(team_id: int, subject: str, body: str) -> None:
    try:
        queue.send("access.tasks.notify_team_task", team_id, subject, body)
    except Exception:
        logger.exception("could not queue a notice to team #%s", team_id)


def send_team_email(team_id: int, subject: str, body: str) -> int:
    """Send a notice to a team's active members; returns how many it went to."""
    emails = sorted(
        set(
            Membership.objects.filter(
                team_id=team_id, team__is_active=True, person__is_active=True
            ).values_list("person__email", flat=True)
        )
        - {""}
    )
    if not emails:
        return 0
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, emails, fail_silently=False)
    return len(emails)


def send_webhook(event: str, request_id: int) -> int:
    """POST the event to WARDEN_WEBHOOK_URL; raises WebhookError (retried) when it fails."""
    url = settings.WARDEN_WEBHOOK_URL
    if not url:
        return 0
    req = AccessRequest.objects.select_related("requester", "role").get(pk=request_id)
    body = json.dumps(webhook_payload(event, req), sort_keys=True).encode()
    ca_file = settings.WARDEN_WEBHOOK_CA_FILE
    return webhooks.post_signed(
        url,
        body,
        settings.WARDEN_WEBHOOK_SECRET,
        ca_pem=Path(ca_file).read_text() if ca_file else "",
    )
