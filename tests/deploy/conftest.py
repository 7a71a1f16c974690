"""The machine side's fixtures (role catalogue, people, RBAC reader) for these tests."""

from tests.clusters.conftest import catalogue, people, rbac  # noqa: F401
