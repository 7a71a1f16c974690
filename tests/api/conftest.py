"""The REST API's fixtures: a DRF client per person, logged in with a real personal token."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from access.services import tokens
from tests.clusters.conftest import catalogue, make_cluster, people, rbac  # noqa: F401


class Api:
    """Clients for the company's people, each with a token made by the real service."""

    def __init__(self, company: Any) -> None:
        self.company = company
        self._clients: dict[str, APIClient] = {}

    def __call__(self, who: str) -> APIClient:
        if who not in self._clients:
            _, secret = tokens.create_api_token(owner=self.company.users[who], name="tests")
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            self._clients[who] = client
        return self._clients[who]


@pytest.fixture
def api(company: Any) -> Api:
    return Api(company)
