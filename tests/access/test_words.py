"""Durations and counts as people read them on pages and in emails."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.words import count_of, duration_in_words


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (timedelta(seconds=45), "45 seconds"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(milliseconds=300), "1 second"),
        (timedelta(0), "0 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(hours=4), "4 hours"),
        (timedelta(days=1, hours=12), "1 day 12 hours"),
        (None, "—"),
    ],
)
def test_a_duration_is_said_in_words_and_a_short_one_is_not_zero(value, said):
    assert duration_in_words(value) == said


def test_counts_take_the_right_plural():
    assert count_of(1, "namespace") == "1 namespace"
    assert count_of(2, "namespace") == "2 namespaces"
    assert count_of(3, "person", "people") == "3 people"
