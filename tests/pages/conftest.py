"""Page tests: the company (tests/fixtures/company.py) with kubesim clusters."""

from __future__ import annotations

from tests.clusters.conftest import make_cluster  # noqa: F401
