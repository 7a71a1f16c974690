"""The machine side's fixtures for these tests: operator, catalogue, people, kubesim clusters."""

from tests.clusters.conftest import catalogue, make_cluster, people  # noqa: F401
