"""Browser tests: the `page` fixture (tests/fixtures/browser.py) on the live app, with the real
slapd (`directory`) and kubesim clusters (`make_cluster`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from access import services
from tests.clusters.conftest import catalogue, make_cluster, people  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    cache.clear()


@pytest.fixture
def developer(directory: Any) -> dict[str, str]:
    """alice, a developer in payments (inside engineering), in the directory and synced."""
    directory.add_person("alice", password="wonderland", display_name="Alice Liddell")
    directory.add_group("payments", people=["alice"])
    directory.add_group("engineering", groups=["payments"])
    services.sync_directory()
    return {"username": "alice", "password": "wonderland", "name": "Alice Liddell"}


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
