"""Durations as people write them: 30m, 4h, 7d, 1d12h (also ISO 8601 such as PT4H)."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils.dateparse import parse_duration

_PART = re.compile(r"(\d+)\s*([dhms])")
_WHOLE = re.compile(r"^\s*(\d+\s*[dhms]\s*)+$")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Nothing Warden keeps lasts longer (access, rotation, tokens); a longer text is a typo, and a
# much longer one cannot even be represented (a date past year 9999).
LONGEST = timedelta(days=3660)
TOO_LONG = "{text!r} is longer than Warden accepts: at most 3660d (ten years)."


def parse(text: str) -> timedelta:
    """`4h` -> 4 hours; ValueError with what to write when the text is not a duration."""
    text = str(text).strip().lower()
    try:
        if _WHOLE.match(text):
            seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
            parsed: timedelta | None = timedelta(seconds=min(seconds, LONGEST.days * 86400 + 1))
        else:
            parsed = parse_duration(text.upper() if text.startswith("p") else text)
    except (OverflowError, ValueError):
        raise ValueError(TOO_LONG.format(text=text[:40])) from None
    if parsed is None:
        raise ValueError(f"{text[:40]!r} is not a duration: write e.g. 30m, 4h, 7d or 1d12h")
    if parsed < timedelta(0):
        raise ValueError(f"{text[:40]!r} is negative: write e.g. 30m, 4h, 7d or 1d12h")
    if parsed > LONGEST:
        raise ValueError(TOO_LONG.format(text=text[:40]))
    return parsed


def format(delta: timedelta) -> str:
    """The shortest exact spelling: 7d, 4h, 90m, 1d12h; 0s for nothing."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s" if seconds == 0 else f"-{format(-delta)}"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
