"""Template filters of the machine side."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """30 days, 12 hours, 45 minutes: a period as people say it."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "none"
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return ", ".join(parts) or "under a minute"


@register.filter
def conflict_command(conflict: str) -> str:
    """The kubectl command that removes the object behind a name conflict ("RoleBinding
    ns/name" -> kubectl delete rolebinding -n ns name), for the person to run once checked."""
    kind, _, where = conflict.partition(" ")
    namespace, _, name = where.rpartition("/")
    scope = f" -n {namespace}" if namespace else ""
    return f"kubectl delete {kind.lower()}{scope} {name}"
