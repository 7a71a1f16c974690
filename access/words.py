"""Small helpers for the sentences people read: counts with the right plural."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone


def count_of(count: int, noun: str, plural: str = "") -> str:
    """1, "request" -> "1 request"; 3 -> "3 requests"; a plural given for the irregular ones."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def duration_in_words(value: timedelta | None) -> str:
    """A duration as people say it: "4 hours", "30 days", "1 day 12 hours"; under a minute in
    seconds ("45 seconds"), never "0 minutes" for something that lasts."""
    if value is None:
        return "—"
    if timedelta(0) < value < timedelta(minutes=1):
        return count_of(int(value.total_seconds()) or 1, "second")
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [count_of(n, unit) for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))]
    return " ".join(p for p in parts if not p.startswith("0 ")) or "0 minutes"


def moment(value: datetime) -> str:
    """A moment as every page and email writes it: "2026-05-04 13:30 UTC" (the site's zone)."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")
