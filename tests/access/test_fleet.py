"""The people side asks the fleet through access.fleet; the clusters app answers."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from access import fleet
from clusters.fleet import ClusterFleet


def test_the_clusters_app_answers_the_people_sides_questions():
    assert isinstance(fleet.fleet(), ClusterFleet)


def test_without_the_clusters_app_the_error_says_what_is_missing(monkeypatch):
    monkeypatch.setattr("access.fleet._connected", [])

    with pytest.raises(ImproperlyConfigured, match="is 'clusters' in INSTALLED_APPS"):
        fleet.fleet()
