"""The attackers' suite: each test tries a path to more access than policy allows.

Personas come from the company fixture: alice and bob are plain members of payments (the owner
team of the accounts they declare), judy and peggy approve (team approvers), olivia is an
operator, mallory is an outsider. Also here: the API clients, kubesim clusters and an HTTPS
listener that records what an attacker's endpoint would receive.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.api.conftest import api  # noqa: F401
from tests.clusters.conftest import catalogue, make_cluster, people, rbac  # noqa: F401


@pytest.fixture
def browser_as(company: Any) -> Any:
    """browser_as("alice") -> a Django test client logged in as that person."""

    def login(who: str) -> Client:
        web = Client()
        web.force_login(company.users[who])
        return web

    return login
