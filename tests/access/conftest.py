"""The machine side's fixtures (kubesim-backed clusters, a role catalogue, people) for the
people-side pages that look at clusters, such as "Why forbidden?"."""

from tests.clusters.conftest import catalogue, make_cluster, people, rbac  # noqa: F401
