"""Root conftest: registers the shared fixtures of tests/fixtures/ (Saleor's habit)."""

pytest_plugins = [
    "tests.fixtures.slapd",
    "tests.fixtures.samba_ad",
    "tests.fixtures.kubesim",
    "tests.fixtures.kubectl",
    "tests.fixtures.company",
    "tests.fixtures.browser",
    "tests.fixtures.kube_apiserver",
    "tests.fixtures.dex",
    "tests.fixtures.leftovers",
    "tests.fixtures.audit",
    "tests.fixtures.https_listener",
    "tests.fixtures.personas",
]
