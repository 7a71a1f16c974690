"""Celery tasks of the people side: thin callers of access.services."""

from __future__ import annotations

from celery import shared_task

from access import services
from access.choices import SyncTrigger


@shared_task(name="access.tasks.sync_directory_task", acks_late=True)
def sync_directory_task(trigger: str = SyncTrigger.SCHEDULE) -> int:
    """Run one directory sync; failures are recorded on the run, not retried blindly."""
    return services.sync_directory(trigger=trigger).pk
