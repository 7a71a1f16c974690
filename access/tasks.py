"""Celery tasks of the people side: thin callers of access.services."""

from __future__ import annotations

from celery import shared_task

from access import reviews, services
from access.choices import SyncTrigger


@shared_task(name="access.tasks.sync_directory_task", acks_late=True)
def sync_directory_task(trigger: str = SyncTrigger.SCHEDULE) -> int:
    """Run one directory sync; failures are recorded on the run, not retried blindly."""
    return services.sync_directory(trigger=trigger).pk


@shared_task(
    name="access.tasks.notify_review_started_task",
    acks_late=True,
    autoretry_for=(OSError,),  # the mail server did not answer (smtplib errors are OSErrors)
    retry_backoff=True,
    max_retries=5,
)
def notify_review_started_task(campaign_id: int) -> int:
    """Tell the reviewers of a new access-review campaign what waits for them."""
    return reviews.notify_started(campaign_id)


@shared_task(
    name="access.tasks.send_review_reminders_task",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_review_reminders_task() -> int:
    """The daily reminder of overdue access-review items; once per campaign and day."""
    return reviews.send_overdue_reminders()
