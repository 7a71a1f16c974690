"""Template filters shared by Warden's pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils.html import format_html

from access.words import count_of, duration_in_words

register = template.Library()


@register.filter
def human_duration(value: timedelta | None) -> str:
    """A duration in words, as people say it: "4 hours", "30 days", "1 day 12 hours"."""
    return duration_in_words(value)


@register.filter
def narrowed_words(narrowed: dict[str, list[object]] | None) -> str:
    """What an approver narrowed, in words: "only on staging-1; only in payments; for 2 hours"."""
    parts = []
    for key, (_before, after) in (narrowed or {}).items():
        names = ", ".join(str(name) for name in after) if isinstance(after, list) else ""
        if key == "clusters":
            parts.append(f"only on {names or 'no cluster'}")
        elif key == "namespaces":
            parts.append(f"only in {names or 'no namespace'}")
        elif key == "duration_s" and isinstance(after, int | float):
            parts.append(f"for {human_duration(timedelta(seconds=after))}")
    return "; ".join(parts)


@register.filter(name="count_of")
def count_of_filter(count: int, noun: str) -> str:
    """{{ n|count_of:"request" }} -> "1 request", "3 requests"."""
    return count_of(count, noun)


@register.filter
def get_item(mapping: dict[object, object], key: object) -> object:
    """mapping[key] in a template ({{ role_info|get_item:choice.data.value }}); None if absent."""
    return mapping.get(key)


@register.simple_tag
def sort_header(sorting: Any, key: str, label: str) -> str:
    """A column heading that sorts the table by it (aria-sort says how it is sorted now)."""
    state = sorting.state(key)
    # A no-break space: the arrow never wraps onto a line of its own.
    arrow = {"ascending": "\u00a0▲", "descending": "\u00a0▼"}.get(state, "")
    return format_html(
        '<th scope="col" aria-sort="{}"><a href="{}">{}{}</a></th>',
        state,
        sorting.link(key),
        label,
        arrow,
    )
