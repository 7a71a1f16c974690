"""The `warden` command line against the app served by live_server, with real tokens."""

from __future__ import annotations

from tests.clusters.conftest import make_cluster, rbac  # noqa: F401
