"""Template filters shared by Warden's pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def human_duration(value: timedelta | None) -> str:
    """A duration in words, as people say it: "4 hours", "30 days", "1 day 12 hours"."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if n
    ]
    return " ".join(parts) or "0 minutes"


@register.filter
def get_item(mapping: dict[object, object], key: object) -> object:
    """mapping[key] in a template ({{ role_info|get_item:choice.data.value }}); None if absent."""
    return mapping.get(key)
