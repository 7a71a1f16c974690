"""Single sign-on that is switched on but not configured refuses to start, saying what is
missing, instead of serving a login button that fails for everyone."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.security.test_metrics_and_tokens import production_settings

CONFIGURED = {
    "METRICS_TOKEN": "m" * 32,
    "OIDC_ENABLED": "1",
    "OIDC_ISSUER": "https://sso.example.com",
    "OIDC_CLIENT_ID": "warden",
    "OIDC_CLIENT_SECRET": "s" * 24,
}


@pytest.fixture(autouse=True)
def _no_oidc_from_outside(monkeypatch):
    for name in (
        "OIDC_ENABLED",
        "OIDC_ISSUER",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET",
        "OIDC_CLIENT_SECRET_FILE",
        "OIDC_MATCH",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("missing", ["OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"])
def test_oidc_enabled_without_its_settings_refuses_to_start(monkeypatch, tmp_path, missing):
    given = {k: v for k, v in CONFIGURED.items() if k != missing}

    with pytest.raises(ImproperlyConfigured, match=f"OIDC_ENABLED is set, but {missing} is empty"):
        production_settings(monkeypatch, tmp_path, **given)


def test_an_issuer_that_is_not_https_is_refused(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="OIDC_ISSUER must be an https:// URL"):
        production_settings(
            monkeypatch, tmp_path, **{**CONFIGURED, "OIDC_ISSUER": "http://sso.example.com"}
        )


def test_an_unknown_way_to_match_people_is_refused(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="OIDC_MATCH='nickname'"):
        production_settings(monkeypatch, tmp_path, **{**CONFIGURED, "OIDC_MATCH": "nickname"})


def test_configured_single_sign_on_adds_its_backend_beside_the_directory(monkeypatch, tmp_path):
    loaded = production_settings(monkeypatch, tmp_path, **CONFIGURED)

    assert loaded["AUTHENTICATION_BACKENDS"] == [
        "access.auth.DirectoryBackend",
        "access.oidc.DirectoryOIDCBackend",
        "access.auth.LocalAccountBackend",
    ]
