"""Celery tasks of the people side: thin callers of access.services and access.notify."""

from __future__ import annotations

from celery import shared_task

from access import notify, services
from access.choices import SyncTrigger
from access.services import requests


@shared_task(name="access.tasks.sync_directory_task", acks_late=True)
def sync_directory_task(trigger: str = SyncTrigger.SCHEDULE) -> int:
    """Run one directory sync; failures are recorded on the run, not retried blindly."""
    return services.sync_directory(trigger=trigger).pk


@shared_task(name="access.tasks.expire_grants_task", acks_late=True)
def expire_grants_task() -> int:
    """End every grant whose time is up, also those that ran out while Warden was down."""
    return len(services.expire_grants())


@shared_task(name="access.tasks.expiry_reminders_task", acks_late=True)
def expiry_reminders_task() -> int:
    return len(requests.send_expiry_reminders())


@shared_task(
    name="access.tasks.notify_email_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def notify_email_task(event: str, request_id: int) -> int:
    return notify.send_email(event, request_id)


@shared_task(
    name="access.tasks.notify_webhook_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def notify_webhook_task(event: str, request_id: int) -> int:
    return notify.send_webhook(event, request_id)
