"""Read queries of the people side."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from access.models import DirectorySync, Person


def last_sync() -> DirectorySync | None:
    return DirectorySync.objects.order_by("-started_at", "-id").first()


def last_successful_sync() -> DirectorySync | None:
    return DirectorySync.objects.filter(status="succeeded").order_by("-started_at", "-id").first()


def recent_syncs(limit: int = 20) -> QuerySet[DirectorySync]:
    return DirectorySync.objects.order_by("-started_at", "-id")[:limit]


def people_deactivated_since(since: datetime) -> QuerySet[Person]:
    """Leavers and disabled accounts since a moment: one index range scan."""
    return Person.objects.filter(is_active=False, deactivated_at__gte=since)
