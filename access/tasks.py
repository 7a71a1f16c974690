"""Celery tasks of the people side: thin callers of access.services and access.notify."""

from __future__ import annotations

from celery import shared_task

from access import notify, services
from access.choices import SyncTrigger
from access.services import leavers, requests
from access.services import reviews as review_service
from core.taskoptions import ONCE, retried
from core.webhooks import WebhookError


@shared_task(name="access.tasks.sync_directory_task", **ONCE)
def sync_directory_task(trigger: str = SyncTrigger.SCHEDULE) -> int:
    """Run one directory sync; failures are recorded on the run, not retried blindly."""
    return services.sync_directory(trigger=trigger).pk


@shared_task(name="access.tasks.expire_grants_task", **ONCE)
def expire_grants_task() -> int:
    """End every grant whose time is up, also those that ran out while Warden was down."""
    return len(services.expire_grants())


@shared_task(name="access.tasks.end_leavers_access_task", **ONCE)
def end_leavers_access_task() -> int:
    """End the personal grants and requests of people who left, once their grace is over."""
    return len(leavers.end_leavers_access())


@shared_task(name="access.tasks.expiry_reminders_task", **ONCE)
def expiry_reminders_task() -> int:
    return len(requests.send_expiry_reminders())


@shared_task(name="access.tasks.notify_email_task", **retried(tries=8))
def notify_email_task(event: str, request_id: int) -> int:
    return notify.send_email(event, request_id)


@shared_task(name="access.tasks.notify_webhook_task", **retried(WebhookError, tries=8))
def notify_webhook_task(event: str, request_id: int) -> int:
    return notify.send_webhook(event, request_id)


@shared_task(name="access.tasks.notify_team_task", **retried(tries=8))
def notify_team_task(team_id: int, subject: str, body: str) -> int:
    return notify.send_team_email(team_id, subject, body)


@shared_task(name="access.tasks.notify_review_started_task", **retried(tries=5))
def notify_review_started_task(campaign_id: int) -> int:
    """Tell the reviewers of a new access-review campaign what waits for them."""
    return review_service.notify_started(campaign_id)


@shared_task(name="access.tasks.send_review_reminders_task", **retried(tries=5))
def send_review_reminders_task() -> int:
    """The daily reminder of overdue access-review items; once per campaign and day."""
    return review_service.send_overdue_reminders()
