"""The machine side's fixtures for these tests: an operator logged in to the test client."""

from tests.clusters.conftest import operator  # noqa: F401
