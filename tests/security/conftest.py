"""Fixtures of the attacker's tests: the API clients, kubesim clusters and an HTTPS listener."""

from tests.api.conftest import api, catalogue, make_cluster, people, rbac  # noqa: F401
from tests.security.servers import listener  # noqa: F401
